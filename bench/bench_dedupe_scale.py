"""Dedupe at scale on generated legacy contacts with planted duplicates.

    python bench/bench_dedupe_scale.py --contacts 100000 [--contacts 1000000]

Cleanses the generated rows (also timed: cleanse rows/s), then dedupes them with the shipped
contacts lot rules. Prints time, peak memory (RSS high-water mark of this process), pairs compared
vs n^2/2, and the recall and precision of the planted duplicate pairs (both rows survived cleanse).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from crm_migration.cleanse import cleanse_rows  # noqa: E402
from crm_migration.config import load_lots  # noqa: E402
from crm_migration.dedupe import dedupe_rows  # noqa: E402
from crm_migration.demo_legacy import COLUMNS, generate  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(contacts: int, methods: list[str]) -> None:
    t = time.perf_counter()
    data = generate(contacts, seed=11)
    t_gen = time.perf_counter() - t
    email_of = {e[0]: e[1] for e in data["email_addresses"]}
    emails = {r[2]: email_of[r[1]] for r in data["email_addr_bean_rel"]}
    company: dict[str, str] = {}  # the live accounts_contacts link, as the extract reads it
    for _, contact, account, _, deleted in data["accounts_contacts"]:
        if not deleted and (contact not in company or account < company[contact]):
            company[contact] = account
    raws = [dict(zip(COLUMNS["contacts"], row), email=emails.get(row[0]), account_id=company.get(row[0]))
            for row in data["contacts"]]
    del data["leads"], data["opportunities"]
    cfg = {lot.lot_id: lot for lot in load_lots()}["contacts"].entities["contacts"]
    t = time.perf_counter()
    clean = cleanse_rows("contacts", raws, cfg).clean
    t_cleanse = time.perf_counter() - t
    print(f"contacts={contacts:,} generated in {t_gen:.0f} s; cleanse {len(raws):,} rows in {t_cleanse:.1f} s"
          f" = {len(raws) / t_cleanse:,.0f} rows/s")
    for method in methods:
        _dedupe(clean, cfg.dedupe.model_copy(update={"method": method}), data, method)


def _dedupe(clean: list[dict], rules, data: dict, method: str) -> None:  # noqa: ANN001
    t = time.perf_counter()
    res = dedupe_rows("contacts", clean, rules)
    t_dedupe = time.perf_counter() - t
    survivor = {lid: s for lid, s, _, _ in res.merges}
    truth = [(d, o) for d, o in data["planted_duplicates"]["contacts"] if d in survivor and o in survivor]
    found = sum(survivor[d] == survivor[o] for d, o in truth)
    truth_set = {frozenset(p) for p in truth}
    merged_pairs = [(lid, s) for lid, s, _, _ in res.merges if lid != s]
    n = len(clean)
    planted = sum(frozenset(p) in truth_set for p in merged_pairs)
    print(f"  [{method}] dedupe {n:,} rows in {t_dedupe:.1f} s = {n / t_dedupe:,.0f} rows/s; pairs compared"
          f" {res.pairs_compared:,} vs n^2/2 {n * (n - 1) // 2:,} (ratio {res.pairs_compared / (n * (n - 1) / 2):.2e})")
    print(f"  planted duplicate pairs {len(truth):,}: recall {found / max(1, len(truth)):.4f};"
          f" merges {len(merged_pairs):,}, of which planted {planted:,} (precision"
          f" {planted / max(1, len(merged_pairs)):.4f}); review pairs {len(res.review):,};"
          f" oversized clusters {res.oversized_clusters}")
    print(f"  peak RSS so far {peak_rss_mb():,.0f} MB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, action="append")
    ap.add_argument("--method", action="append", choices=("weighted", "probabilistic"),
                    help="default: both, side by side on the same rows")
    args = ap.parse_args()
    for n in args.contacts or [100_000]:
        run(n, args.method or ["weighted", "probabilistic"])


if __name__ == "__main__":
    main()
