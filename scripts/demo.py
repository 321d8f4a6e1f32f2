"""make demo: build the demo legacy CRM, run every lot DAG and then the delta-sync cutover with
`airflow dags test`, print the reports.

Uses AIRFLOW_CONN_CRM_TARGET / AIRFLOW_CONN_CRM_LEGACY when set; otherwise starts an
embedded PostgreSQL (pgserver) in .pgdata/ and creates crm_demo_legacy and crm_demo_target.
DEMO_CONTACTS sets the size of the legacy CRM (default 5000 contacts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from crm_demo import local_pg  # noqa: E402
from crm_migration.model.config import load_lots  # noqa: E402
from crm_migration.model.db import create_database_if_missing, engine, ensure_target_schema, to_sqlalchemy_url  # noqa: E402


def _connections() -> tuple[str, str, bool]:
    """(legacy url, target url, whether the target is the demo's own database and may be reset)."""
    own = not os.environ.get("AIRFLOW_CONN_CRM_TARGET")
    if not own:
        target = os.environ["AIRFLOW_CONN_CRM_TARGET"]
        legacy = os.environ.get("AIRFLOW_CONN_CRM_LEGACY") or local_pg.database_url(target, "crm_demo_legacy")
        print("using the configured target database (AIRFLOW_CONN_CRM_TARGET)")
    else:
        server = local_pg.server_url(allow_local=False)
        print(f"no AIRFLOW_CONN_CRM_TARGET: embedded PostgreSQL in {ROOT / '.pgdata'}")
        legacy = local_pg.database_url(server, "crm_demo_legacy")
        target = local_pg.database_url(server, "crm_demo_target")
    os.environ["AIRFLOW_CONN_CRM_LEGACY"] = legacy
    os.environ["AIRFLOW_CONN_CRM_TARGET"] = target
    return to_sqlalchemy_url(legacy), to_sqlalchemy_url(target), own


def main() -> int:
    t0 = time.perf_counter()
    legacy_url, target_url, own_target = _connections()
    from crm_demo.demo_legacy import build_legacy

    contacts = int(os.environ.get("DEMO_CONTACTS", "5000"))
    counts = build_legacy(legacy_url, contacts=contacts)
    print("1/3 legacy CRM built:", ", ".join(f"{t}={n}" for t, n in counts.items()))
    create_database_if_missing(target_url)
    if own_target:  # the demo's own embedded database: every demo starts from an empty target
        with engine(target_url).begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS crm, crm_migration, stg CASCADE")
    ensure_target_schema(target_url)
    log_dir = Path(os.environ["AIRFLOW_HOME"]) / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "db-migrate.log", "w") as out:
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=out,
                       stderr=subprocess.STDOUT)
    print("2/3 Airflow metadata DB ready:", os.environ["AIRFLOW_HOME"])
    failed = False
    # the lots, the cutover's delta, then the freeze: NO-GO on the legacy CRM as it is, GO once the data
    # owners' corrections and waivers (config/examples/demo/data_owner/) are in
    owner = ROOT / "config" / "examples" / "demo" / "data_owner"
    runs = [(f"crm_lot_{lot.lot_id}", lot.lot_id, None, {}) for lot in load_lots()] + [
        ("crm_delta_sync", "delta", None, {}),
        ("crm_delta_sync", "delta", {"freeze": True}, {}),
        ("crm_delta_sync", "delta", {"freeze": True}, {"CRM_CORRECTIONS_FILE": str(owner / "corrections.csv"),
                                                       "CRM_WAIVERS_FILE": str(owner / "waivers.csv")})]
    freezes = 0
    for dag_id, lot_id, conf, env in runs:
        if dag_id == "crm_delta_sync":  # the cutover: users kept working in the legacy CRM meanwhile
            with engine(legacy_url).begin() as conn:
                conn.exec_driver_sql("UPDATE contacts SET title = 'Head of Cutover', date_modified = now() AT TIME"
                                     " ZONE 'UTC' WHERE id IN (SELECT id FROM contacts WHERE deleted = 0"
                                     " ORDER BY id LIMIT 200)")
                conn.exec_driver_sql("UPDATE accounts SET deleted = 1, date_modified = now() AT TIME ZONE 'UTC'"
                                     " WHERE id IN (SELECT id FROM accounts WHERE deleted = 0 ORDER BY id LIMIT 5)")
            print("    200 contacts edited and 5 accounts deleted in the legacy CRM since the lots ran")
        log = log_dir / f"{dag_id}.log"
        t = time.perf_counter()
        if conf:
            freezes += 1
            log = log_dir / f"{dag_id}_freeze{freezes}.log"
            print("    freeze " + ("with the data owners' corrections and waivers" if env else "on the legacy CRM"
                                   " as it is (a NO-GO is expected: the quarantine is not dealt with)"))
        with open(log, "w") as out:
            rc = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", dag_id,
                                 *(["-c", json.dumps(conf)] if conf else [])], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}).returncode
        print(f"3/3 airflow dags test {dag_id}{' (freeze)' if conf else ''}: {'OK' if rc == 0 else 'FAILED'} in"
              f" {time.perf_counter() - t:.1f} s (log: {log})")
        expected_no_go = conf and not env
        failed |= rc != 0 and not expected_no_go
        with engine(target_url).connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT report FROM crm_migration.run_report WHERE lot_id = %(l)s ORDER BY created_at DESC LIMIT 1",
                {"l": lot_id}).first()
        if row:
            from crm_migration.reports.report import report_path, summary_text

            rep = row[0]
            print(summary_text(rep))
            path = report_path(os.environ.get("CRM_REPORT_DIR") or "reports", rep["lot_id"], rep["run_id"])
            print(f"  report: {path} and {path.with_suffix('.html')}")
        if rc != 0 and not expected_no_go:
            print(log.read_text()[-3000:])
            break
    print(f"demo {'FAILED' if failed else 'done'} in {time.perf_counter() - t0:.1f} s;"
          " reports also in crm_migration.run_report of the target database")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
