"""Load throughput: our upsert load vs a raw COPY of the same rows, side by side in one run.

    python bench/bench_load.py [--rows 200000]

Builds N staged company rows (stg.accounts_transform) in a scratch database (crm_bench on the server
local_pg finds), then times, on the same rows:
  copy      raw COPY FROM STDIN into an empty table shaped like crm.companies (the floor to beat)
  load_1w   crm_migration.load.run_load into an empty crm.companies, 1 worker: upsert (newer-wins, row hash
            from stg.extract) + pre-image + crosswalk + ledger
  load      the same with the default 2 workers (chunks in parallel, each its own transaction)
  reload    run_load again, nothing changed (the rerun of a cleared task)
  to_sql    pandas DataFrame.to_sql into an empty table (on 1/5 of the rows), for contrast
and prints rows/s and the ratios load/copy, reload/copy, to_sql/copy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import sqlalchemy as sa  # noqa: E402

from crm_demo import local_pg  # noqa: E402
from crm_migration.model.config import LotConfig  # noqa: E402
from crm_migration.model.db import copy_rows, create_database_if_missing, engine, ensure_target_schema  # noqa: E402
from crm_migration.model.db import to_sqlalchemy_url  # noqa: E402
from crm_migration.stages.load import run_load  # noqa: E402
from crm_migration.rules.transform import TARGET_COLUMNS  # noqa: E402

RUN = "bench_run"


def setup(url: str, rows: int) -> None:
    with engine(url).begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS crm, crm_migration, stg CASCADE")
    ensure_target_schema(url)
    with engine(url).begin() as conn:
        conn.exec_driver_sql(f"""
            INSERT INTO stg.accounts_transform (lot_id, run_id, id, legacy_id, name, domain, phone, address_street,
                address_city, address_postal_code, address_country, industry, company_type, created_at, updated_at,
                row_hash)
            SELECT 'bench', '{RUN}', md5('acc' || g)::uuid, 'legacy-' || lpad(g::text, 9, '0'),
                   'Company ' || g || ' GmbH', 'company' || g || '.example',
                   '+3315613' || lpad(mod(g, 10000)::text, 4, '0'),
                   g || ' rue de la Paix', 'Paris', lpad(mod(g, 99999)::text, 5, '0'), 'FR', 'Technology', 'CUSTOMER',
                   now() - (g || ' minutes')::interval, now(), md5('raw' || g)
            FROM generate_series(1, {rows}) g""")
        # each staged row's extracted legacy row: the load carries its hash into the target (freeze diff)
        conn.exec_driver_sql(f"""
            INSERT INTO stg.extract (lot_id, run_id, entity, legacy_id, row_hash, data)
            SELECT 'bench', '{RUN}', 'accounts', 'legacy-' || lpad(g::text, 9, '0'), md5('raw' || g), '{{}}'::jsonb
            FROM generate_series(1, {rows}) g""")
        conn.exec_driver_sql("ANALYZE stg.accounts_transform")
        conn.exec_driver_sql("ANALYZE stg.extract")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    url = to_sqlalchemy_url(local_pg.database_url(local_pg.server_url(), "crm_bench"))
    create_database_if_missing(url)
    setup(url, args.rows)
    cols = TARGET_COLUMNS["accounts"]
    with engine(url).connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text(
            f"SELECT {', '.join(cols)} FROM stg.accounts_transform ORDER BY legacy_id"))]
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS public.copy_floor (LIKE crm.companies INCLUDING ALL)")
        conn.exec_driver_sql("TRUNCATE public.copy_floor")
        conn.commit()

    def copy() -> None:
        with engine(url).begin() as conn:
            copy_rows(conn, "public.copy_floor", cols, rows)

    def fresh_target() -> None:
        with engine(url).begin() as conn:
            conn.exec_driver_sql("TRUNCATE crm.companies CASCADE; TRUNCATE crm_migration.merged,"
                                 " crm_migration.pre_image, crm_migration.watermark_pre_image,"
                                 " crm_migration.legacy_ledger, crm_migration.load_outcome")

    lot1 = LotConfig(lot_id="bench", description="bench", entities={"accounts": {}}, load_workers=1)
    lot2 = LotConfig(lot_id="bench", description="bench", entities={"accounts": {}}, load_workers=2)
    t_copy = timed(copy)
    t_load1 = timed(lambda: run_load(url, lot1, "accounts", RUN))
    fresh_target()
    t_load = timed(lambda: run_load(url, lot2, "accounts", RUN))
    t_reload = timed(lambda: run_load(url, lot2, "accounts", RUN))

    import pandas as pd

    sample = max(1, args.rows // 5)
    df = pd.DataFrame(rows[:sample], columns=cols)
    with engine(url).begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS public.to_sql_floor")
    t_to_sql = timed(lambda: df.to_sql("to_sql_floor", engine(url), schema="public", index=False, chunksize=10_000))

    n = args.rows
    rate = {"copy": n / t_copy, "load_1w": n / t_load1, "load": n / t_load, "reload": n / t_reload,
            "to_sql": sample / t_to_sql}
    for k, v in rate.items():
        print(f"{k:<7} {v:>12,.0f} rows/s")
    print(f"ratio load/copy   {rate['load'] / rate['copy']:.2f}  (goal >= 0.7; 2 workers, the default)")
    print(f"ratio load_1w/copy {rate['load_1w'] / rate['copy']:.2f}  (1 worker)")
    print(f"ratio reload/copy {rate['reload'] / rate['copy']:.2f}")
    print(f"ratio to_sql/copy {rate['to_sql'] / rate['copy']:.2f}")


if __name__ == "__main__":
    main()
