"""The cutover window: delta sync of ~10k changed rows vs a full reload, side by side in one run.

    python bench/bench_delta.py [--contacts 50000] [--changes 10000]

Builds a legacy CRM (scratch databases crm_bench_legacy / crm_bench_target), loads every lot with
`airflow dags test` (that is the full reload timed), changes --changes rows across accounts and
contacts (80 % contacts: updates, a few new rows and soft deletes), then times
`airflow dags test crm_delta_sync` from trigger to done, gates included, and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from crm_demo import local_pg  # noqa: E402
from crm_migration.model.config import load_lots  # noqa: E402
from crm_migration.model.db import create_database_if_missing, engine, to_sqlalchemy_url  # noqa: E402
from crm_demo.demo_legacy import build_legacy  # noqa: E402


def airflow_env() -> dict:
    home = tempfile.mkdtemp(prefix="crm-bench-airflow-")
    env = os.environ.copy()
    env.update({"AIRFLOW_HOME": home, "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "PYTHONPATH": str(ROOT / "plugins"), "SODA_CORE_TELEMETRY_ENABLED": "false", "CRM_RETRIES": "0",
                "CRM_REPORT_DIR": str(Path(home) / "reports")})
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    return env


def dags_test(env: dict, dag_id: str, conf: str | None = None) -> float:
    cmd = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
    if conf:
        cmd += ["--conf", conf]
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{dag_id} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=50_000)
    ap.add_argument("--changes", type=int, default=10_000)
    args = ap.parse_args()
    server = local_pg.server_url()
    legacy_uri = local_pg.database_url(server, "crm_bench_legacy")
    target_uri = local_pg.database_url(server, "crm_bench_target")
    legacy, target = to_sqlalchemy_url(legacy_uri), to_sqlalchemy_url(target_uri)
    build_legacy(legacy, contacts=args.contacts, seed=3)
    create_database_if_missing(target)
    with engine(target).begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS crm, crm_migration, stg CASCADE")
    env = airflow_env()
    env.update({"AIRFLOW_CONN_CRM_LEGACY": legacy_uri, "AIRFLOW_CONN_CRM_TARGET": target_uri})
    t_full = sum(dags_test(env, f"crm_lot_{lot.lot_id}") for lot in load_lots())

    n_acc, n_con = args.changes // 5, args.changes - args.changes // 5
    n_special = min(100, n_con // 4)  # contacts deleted, and contacts new (100 each, fewer for a small delta)
    with engine(legacy).begin() as conn:
        now = "now() AT TIME ZONE 'UTC'"
        conn.exec_driver_sql(f"UPDATE accounts SET industry = 'Technology', date_modified = {now} WHERE id IN"
                             f" (SELECT id FROM accounts WHERE deleted = 0 ORDER BY md5(id) LIMIT {n_acc})")
        edited = n_con - 2 * n_special
        conn.exec_driver_sql(f"UPDATE contacts SET title = 'Cutover', date_modified = {now} WHERE id IN"
                             f" (SELECT id FROM contacts WHERE deleted = 0 ORDER BY md5(id) LIMIT {edited})")
        conn.exec_driver_sql(f"UPDATE contacts SET deleted = 1, date_modified = {now} WHERE id IN"
                             " (SELECT id FROM contacts WHERE deleted = 0 AND title <> 'Cutover' ORDER BY md5(id)"
                             f" LIMIT {n_special})")
        conn.exec_driver_sql("INSERT INTO contacts (id, first_name, last_name, primary_address_country, lead_source,"
                             " date_entered, date_modified, deleted)"
                             f" SELECT 'bench-new-' || g, 'New', 'Person ' || g, 'France', 'Web Site', {now}, {now}, 0"
                             f" FROM generate_series(1, {n_special}) g")
    t_delta = dags_test(env, "crm_delta_sync")
    with engine(target).connect() as conn:
        report = conn.exec_driver_sql("SELECT report FROM crm_migration.run_report WHERE lot_id = 'delta'"
                                      " ORDER BY created_at DESC LIMIT 1").scalar_one()
    rows = {e: c["source"] for e, c in report["entities"].items()}
    print(f"legacy: {args.contacts:,} contacts; changed rows seen by the delta: {rows}"
          f" (identity {'OK' if report['identity_ok'] else 'BROKEN'})")
    print(f"full reload (every lot, airflow dags test): {t_full:.1f} s")
    print(f"delta sync  (airflow dags test, trigger to done, gates included): {t_delta:.1f} s (goal < 30 s)")
    print(f"cutover window in the report (run start to watermark advanced): {report['cutover']['window_seconds']} s")
    print(f"ratio delta / full reload: {t_delta / t_full:.2f}")


if __name__ == "__main__":
    main()
