"""Issue 13: the same DAGs on Celery workers. `make airflow`'s script with --celery 2 starts the API server,
scheduler, DAG processor, triggerer and two Celery workers (Redis broker on 127.0.0.1:6379, as on a team's
machines); the users lot is triggered through the REST API and the accounts lot follows on its asset
event, their tasks spread over both workers. The target then holds, row for row, what the
same lots load in-process (dag.test): the executor changes where tasks run, never what they write."""

from __future__ import annotations

import re
import socket
import sys

import pytest
from conftest import ROOT, TARGET_URL
from helpers import airflow_env, free_port, fresh_database, run_dag

from crm_migration.model.db import engine, to_sqlalchemy_url

sys.path.insert(0, str(ROOT / "scripts"))
from airflow_ui import Launched  # noqa: E402


LOTS = ("crm_lot_users", "crm_lot_accounts")
TABLES = ("crm.owners", "crm.companies")
DATABASES = ("crm_test_celery_target", "crm_test_celery_rehearsal", "crm_test_celery_airflow")


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
        return True
    except OSError:
        return False


pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")]


def content_checksum(url: str, table: str) -> tuple[int, str]:
    """Rows and an md5 of their values by legacy id, without the run ids that name which run wrote them."""
    with engine(url).connect() as conn:
        return tuple(conn.exec_driver_sql(
            f"SELECT count(*), coalesce(md5(string_agg((to_jsonb(t) - 'migrated_first_run_id'"
            f" - 'migrated_last_run_id')::text, '|' ORDER BY t.legacy_id)), '') FROM {table} t").one())


def test_lots_on_two_celery_workers_load_what_dag_test_loads(dagbag, target_url, tmp_path):
    for dag_id in LOTS:  # the reference: in-process runs of the same lots
        dr = run_dag(dagbag, dag_id)
        assert str(dr.state) == "success", dag_id
    reference = {t: content_checksum(TARGET_URL, t) for t in TABLES}
    assert all(n > 0 for n, _ in reference.values())

    target, rehearsal, meta = (fresh_database(d) for d in DATABASES)
    env = airflow_env(tmp_path, free_port(), target, rehearsal, meta)
    env.update({"CRM_CELERY_BROKER": "redis://127.0.0.1:6379/13", "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                # as in production, a transient error is retried: a lot's prepare (DDL) and the previous lot's
                # report, side by side on two workers, can deadlock in PostgreSQL (seen once in CI)
                "CRM_RETRIES": "1",
                # batches of 40 rows: the accounts' cleanse runs on worker processes started by a Celery task
                "CRM_BATCH_ROWS": "40"})
    af = Launched(env, ["--celery", "2"])
    try:
        for dag_id in ("crm_lot_contacts", "crm_lot_opportunities", "crm_lot_leads",
                       "crm_lot_activities"):  # not part of this test
            af.api(f"/api/v2/dags/{dag_id}", {"is_paused": True}, method="PATCH")
        run_id = af.trigger("crm_lot_users")
        assert af.wait("crm_lot_users", run_id, 600)["state"] == "success"
        for dag_id in LOTS[1:]:  # started by the users lot's asset event, not by the test
            runs: list = []
            while not runs:
                runs = af.api(f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
            assert runs[0]["run_type"] == "asset_triggered"
            assert af.wait(dag_id, runs[0]["dag_run_id"], 900)["state"] == "success", dag_id
        logs = [p.read_text() for p in sorted(tmp_path.glob("celery-worker-*.log"))]
    finally:
        left = af.stop()
    assert left == [], f"components left running after Ctrl-C: {left}"
    assert len(logs) == 2 and all("crm_lot_" in text for text in logs), "each worker ran lot tasks"
    cleanse_log = next((tmp_path / "logs" / "dag_id=crm_lot_accounts").glob("run_id=*/task_id=cleanse_accounts/*.log"))
    assert re.search(r"cleanse_rows: batches on [2-9] worker processes", cleanse_log.read_text())
    assert {t: content_checksum(to_sqlalchemy_url(target), t) for t in TABLES} == reference
