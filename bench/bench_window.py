"""The cutover window against the size of the CRM: the same 100 and 1,000 changed rows on legacy CRMs of
different sizes, under the real scheduler, side by side in one run.

    python bench/bench_window.py [--contacts 20000 --contacts 200000] [--changes 100 --changes 1000]

For each size: builds a legacy CRM (scratch databases crm_bench_sched_*, rebuilt), loads every lot once
(`airflow dags test`), starts Airflow as `make airflow` does (bench_cutover_scheduler.py: airflow standalone,
LocalExecutor), runs one delta with nothing changed (DAG parsed, workers warm), then for each --changes changes
that many rows (80 % contacts, 20 % accounts) and deletes a tenth as many contacts outright (hard deletes), and
measures trigger -> watermark advanced, trigger -> run done and the report's window. Prints one table; the
ratio of each size's window to the smallest size's is the figure that should stay near 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_ui import Launched  # noqa: E402
from bench_cutover_scheduler import change, migrated_crm, scheduler_run  # noqa: E402

from crm_migration.model.db import engine  # noqa: E402


def hard_delete(legacy: str, n: int, tag: str) -> None:
    """n contacts removed from the legacy tables (no soft-delete flag: only the hard-delete detection sees it)."""
    with engine(legacy).begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM contacts WHERE id IN (SELECT id FROM contacts WHERE deleted = 0"
                             f" AND title NOT LIKE 'Cutover%%' ORDER BY md5(id || '{tag}x') LIMIT {n})")


def one_size(contacts: int, changes: list[int]) -> list[tuple]:
    urls, _, af_env = migrated_crm(contacts)
    af = Launched(af_env)
    out = []
    try:
        scheduler_run(af, urls["target"])  # DAG parsed, workers warm; the hard-delete checksums kept
        for n in changes:
            change(urls["legacy"], n, f"w{n}")
            hard_delete(urls["legacy"], max(1, n // 10), f"w{n}")
            wm, done, window = scheduler_run(af, urls["target"])
            out.append((contacts, n, wm, done, window))
            print(f"  {contacts:,} contacts, {n:,} changed rows (+{max(1, n // 10)} deleted): trigger -> watermark"
                  f" advanced {wm:.1f} s, -> run done {done:.1f} s (report's window {window} s)", flush=True)
    finally:
        af.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, action="append")
    ap.add_argument("--changes", type=int, action="append")
    args = ap.parse_args()
    sizes, changes = args.contacts or [20_000, 200_000], args.changes or [100, 1_000]
    rows = [r for size in sizes for r in one_size(size, changes)]
    base = {n: wm for size, n, wm, _, _ in rows if size == min(sizes)}
    print("\nlegacy contacts | changed rows | trigger -> watermark advanced (s) | x smallest CRM |"
          " trigger -> run done (s) | report window (s)")
    for size, n, wm, done, window in rows:
        print(f"{size:,} | {n:,} | {wm:.1f} | {wm / base[n]:.2f} | {done:.1f} | {window}")


if __name__ == "__main__":
    main()
