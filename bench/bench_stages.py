"""Throughput of cleanse and dedupe on the demo legacy CRM, measured side by side in one run.

    python bench/bench_stages.py [--contacts 100000]

Prints rows/s per stage and dedupe's pairs compared vs n^2/2 (the ratio blocking buys).
Uses the generator in memory: no database needed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from crm_migration.cleanse import cleanse_rows  # noqa: E402
from crm_migration.config import load_lots  # noqa: E402
from crm_migration.dedupe import dedupe_rows  # noqa: E402
from crm_migration.demo_legacy import COLUMNS, generate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=20000)
    args = ap.parse_args()
    t = time.perf_counter()
    data = generate(args.contacts, seed=1)
    print(f"generated {args.contacts} legacy contacts in {time.perf_counter() - t:.1f} s")
    emails = {r[2]: e[1] for r, e in zip(data["email_addr_bean_rel"], data["email_addresses"])}
    raws = [dict(zip(COLUMNS["contacts"], row), email=emails.get(row[0])) for row in data["contacts"]]
    cfg = {lot.lot_id: lot for lot in load_lots()}["contacts"].entities["contacts"]
    t = time.perf_counter()
    res = cleanse_rows("contacts", raws, cfg)
    t_cleanse = time.perf_counter() - t
    t = time.perf_counter()
    dd = dedupe_rows("contacts", res.clean, cfg.dedupe)
    t_dedupe = time.perf_counter() - t
    n = len(res.clean)
    print(f"cleanse: {len(raws)} rows in {t_cleanse:.2f} s = {len(raws) / t_cleanse:,.0f} rows/s")
    print(f"dedupe : {n} rows in {t_dedupe:.2f} s = {n / t_dedupe:,.0f} rows/s,"
          f" {dd.pairs_compared:,} pairs compared vs n^2/2 = {n * (n - 1) // 2:,}"
          f" (ratio {dd.pairs_compared / max(1, n * (n - 1) // 2):.2e}), {n - len(dd.survivors)} merged")
    print(f"ratio cleanse/dedupe time: {t_cleanse / t_dedupe:.1f}")


if __name__ == "__main__":
    main()
