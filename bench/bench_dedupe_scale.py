"""Dedupe at scale on generated legacy contacts with planted duplicates.

    python bench/bench_dedupe_scale.py --contacts 100000 [--contacts 1000000]

Cleanses the generated rows (also timed: cleanse rows/s; kept in bench/.data for the next run), then
dedupes them with the shipped contacts lot rules, each method in a process of its own. Prints time,
peak memory of that process (RSS high-water mark: the rows plus the dedupe, as in the task), pairs
compared vs n^2/2, and the recall and precision of the planted duplicate pairs (both rows survived cleanse).
"""

from __future__ import annotations

import argparse
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from crm_migration.rules.cleanse import cleanse_rows  # noqa: E402
from crm_migration.model.config import load_lots  # noqa: E402
from crm_migration.matching import partitioned  # noqa: E402
from crm_migration.matching.dedupe import dedupe_rows  # noqa: E402
from crm_migration.model.spec import spec  # noqa: E402
from crm_migration.stages import relations  # noqa: E402
from crm_demo.demo_legacy import COLUMNS, generate  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


CACHE = Path(__file__).resolve().parent / ".data"


def prepare(contacts: int) -> Path:
    """Generate and cleanse the contacts once; the cleaned rows and planted pairs are kept in bench/.data
    (gitignored) so each method's run starts from the same rows in a process of its own."""
    path = CACHE / f"planted_contacts_{contacts}_birthdates.pkl"  # rows as the extract has read them since 12-07
    if path.exists():
        print(f"contacts={contacts:,}: cleaned rows from {path}")
        return path
    t = time.perf_counter()
    data = generate(contacts, seed=11)
    t_gen = time.perf_counter() - t
    # the e-mails as the extract reads them: the primary (the first live link flagged primary, its address
    # if live) and, for the dedupe, every live one through the relation's rule (values_of: all_emails)
    live_address = {e[0]: e[1] for e in data["email_addresses"] if not e[5] and e[1] is not None}
    links = sorted(r for r in data["email_addr_bean_rel"] if r[3] == "Contacts" and not r[5])
    emails: dict[str, str | None] = {}
    for _, address, contact, _, primary, _ in links:  # by link id: the first primary wins
        if primary and contact not in emails:
            emails[contact] = live_address.get(address)
    relation = spec("contacts").relations["emails"]
    every: dict[str, set[str]] = {}
    for contact, value, _, _ in relations.cleaned("contacts", relation, (
            (contact, live_address[address].strip().lower(), bool(primary), ())
            for _, address, contact, _, primary, _ in links if address in live_address)):
        every.setdefault(contact, set()).add(value)
    company: dict[str, str] = {}  # the live accounts_contacts link, as the extract reads it
    for _, contact, account, _, deleted in data["accounts_contacts"]:
        if not deleted and (contact not in company or account < company[contact]):
            company[contact] = account
    raws = [dict(zip(COLUMNS["contacts"], row, strict=False), email=emails.get(row[0]), account_id=company.get(row[0]),
                 all_emails=" ".join(sorted(every[row[0]])) if row[0] in every else None) for row in data["contacts"]]
    t = time.perf_counter()
    clean = cleanse_rows("contacts", raws, _entity()).clean
    t_cleanse = time.perf_counter() - t
    print(f"contacts={contacts:,} generated in {t_gen:.0f} s; cleanse {len(raws):,} rows in {t_cleanse:.1f} s"
          f" = {len(raws) / t_cleanse:,.0f} rows/s")
    CACHE.mkdir(exist_ok=True)
    with path.open("wb") as f:
        pickle.dump({"clean": clean, "planted": data["planted_duplicates"]["contacts"]}, f, protocol=5)
    return path


def _entity():  # noqa: ANN202
    return {lot.lot_id: lot for lot in load_lots()}["contacts"].entities["contacts"]


def _rules():  # noqa: ANN202
    return _entity().dedupe


def child(path: Path, method: str) -> None:
    """One method on the cached rows, in this process: its peak RSS is the dedupe task's (rows + dedupe)."""
    with path.open("rb") as f:
        cached = pickle.load(f)
    clean, planted = cached["clean"], cached["planted"]
    del cached
    loaded = rss_mb()
    rules = _rules().model_copy(update={"method": method})
    t = time.perf_counter()
    # partitioned as the lot's dedupe tasks are (one partition per 500,000 key values: partitioned.py)
    res = dedupe_rows("contacts", clean, rules,
                      partitions=partitioned.partitions_for(len(clean), rules.partitions, len(rules.blocking)))
    t_dedupe = time.perf_counter() - t
    survivor = {lid: s for lid, s, _, _ in res.merges}
    truth = [(d, o) for d, o in planted if d in survivor and o in survivor]
    found = sum(survivor[d] == survivor[o] for d, o in truth)
    truth_set = {frozenset(p) for p in truth}
    merged_pairs = [(lid, s) for lid, s, _, _ in res.merges if lid != s]
    n = len(clean)
    hit = sum(frozenset(p) in truth_set for p in merged_pairs)
    print(f"  [{method}] dedupe {n:,} rows in {t_dedupe:.1f} s = {n / t_dedupe:,.0f} rows/s; pairs compared"
          f" {res.pairs_compared:,} vs n^2/2 {n * (n - 1) // 2:,} (ratio {res.pairs_compared / (n * (n - 1) / 2):.2e})")
    print(f"  planted duplicate pairs {len(truth):,}: recall {found / max(1, len(truth)):.4f};"
          f" merges {len(merged_pairs):,}, of which planted {hit:,} (precision"
          f" {hit / max(1, len(merged_pairs)):.4f}); review pairs {len(res.review):,};"
          f" oversized clusters {res.oversized_clusters}")
    print(f"  peak RSS of the dedupe process {peak_rss_mb():,.0f} MB (the cleaned rows alone: {loaded:,.0f} MB)",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, action="append")
    ap.add_argument("--method", action="append", choices=("weighted", "probabilistic"),
                    help="default: both, side by side on the same rows")
    ap.add_argument("--child", nargs=2, metavar=("PICKLE", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return
    for n in args.contacts or [100_000]:
        path = prepare(n)
        for method in args.method or ["weighted", "probabilistic"]:
            subprocess.run([sys.executable, __file__, "--child", str(path), method], check=True)


if __name__ == "__main__":
    main()
