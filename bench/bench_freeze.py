"""The freeze verification: every legacy contact compared with the target by key and hash, against a
plain extract of the same rows, side by side in one run.

    python bench/bench_freeze.py [--contacts 100000] [--no-load] [--reuse]

Builds a legacy CRM (scratch databases crm_bench_legacy / crm_bench_target), migrates accounts and
contacts with the stage functions (no Airflow: the comparison is what is timed; --no-load skips
this and compares against an empty target, to reach 1M rows quickly; --reuse keeps the databases a
previous run built and loaded, to measure the freeze again after a change), then times:
  plain extract: the contacts extract query streamed to the client, nothing else;
  freeze compare: the same rows read and hashed, copied into the target, classified by joins by id, then
  every target row's content and links checked (crm_migration.content).
Prints rows/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from crm_demo import local_pg  # noqa: E402
from crm_migration.stages import load, run as stages  # noqa: E402
from crm_migration.model.config import load_lots  # noqa: E402
from crm_migration.model.db import create_database_if_missing, engine, ensure_target_schema, to_sqlalchemy_url  # noqa: E402
from crm_demo.demo_legacy import build_legacy  # noqa: E402
from crm_migration.source.legacy import extract_sql  # noqa: E402
from crm_migration.checks.reconcile import freeze_compare  # noqa: E402


def plain_extract(legacy: str, sql: str) -> int:
    import sqlalchemy as sa

    n = 0
    with engine(legacy).connect() as conn:
        for _ in conn.execution_options(stream_results=True, yield_per=10_000).execute(sa.text(sql)):
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=100_000)
    ap.add_argument("--no-load", action="store_true", help="compare against an empty target")
    ap.add_argument("--reuse", action="store_true", help="keep the legacy and target a previous run built")
    ap.add_argument("--build-only", action="store_true", help="build and load, measure later with --reuse")
    args = ap.parse_args()
    server = local_pg.server_url()
    legacy = to_sqlalchemy_url(local_pg.database_url(server, "crm_bench_legacy"))
    target = to_sqlalchemy_url(local_pg.database_url(server, "crm_bench_target"))
    if not args.reuse:
        build_and_load(legacy, target, args.contacts, not args.no_load)
    if not args.build_only:
        measure(legacy, target)


def build_and_load(legacy: str, target: str, contacts: int, migrate: bool) -> None:
    t = time.perf_counter()
    build_legacy(legacy, contacts=contacts, seed=3)
    print(f"legacy CRM with {contacts:,} contacts built in {time.perf_counter() - t:.0f} s")
    create_database_if_missing(target)
    with engine(target).begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS crm, crm_migration, stg CASCADE")
    ensure_target_schema(target)
    lots = {lot.lot_id: lot for lot in load_lots()}
    if migrate:
        t = time.perf_counter()
        for lot_id in ("accounts", "contacts"):
            lot = lots[lot_id]
            stages.run_extract(legacy, target, lot, lot_id, "bench")
            for stage in (stages.run_cleanse, stages.run_dedupe, stages.run_transform):
                stage(target, lot, lot_id, "bench")
            load.run_load(target, lot, lot_id, "bench", advance_watermark=True)
        print(f"accounts and contacts migrated in {time.perf_counter() - t:.0f} s")


def measure(legacy: str, target: str) -> None:
    lot = {lot.lot_id: lot for lot in load_lots()}["contacts"]
    sql, _ = extract_sql(lot, "contacts")
    for _ in range(2):  # the first pass warms the legacy server's cache for both
        t = time.perf_counter()
        n_plain = plain_extract(legacy, sql)
        t_plain = time.perf_counter() - t
        t = time.perf_counter()
        rec = freeze_compare(target, legacy, lot, "contacts")
        t_freeze = time.perf_counter() - t
    print(f"fates: {rec.counts}")
    print(f"plain extract : {n_plain:,} rows in {t_plain:.1f} s ({n_plain / t_plain:,.0f} rows/s)")
    print(f"freeze compare: {rec.in_scope:,} rows in {t_freeze:.1f} s ({rec.in_scope / t_freeze:,.0f} rows/s),"
          f" of which content and links of the target rows {rec.content_seconds:.1f} s")
    print(f"ratio freeze / plain extract: {t_freeze / t_plain:.2f}")


if __name__ == "__main__":
    main()
