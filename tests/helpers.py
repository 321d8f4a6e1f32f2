"""Helpers the test modules share (no test module imports another): running the real DAGs through
dag.test(), reading what a run left, a fresh database, a free port, Airflow's environment for the
scheduler tests."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import datetime, UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa
from conftest import LEGACY_URI, LOT_CONF, ROOT, RUN_DATE, SERVER

from crm_demo import local_pg
from crm_migration.stages import load, relations, run as stages
from crm_migration.model.config import load_lots
from crm_migration.model.db import engine, to_sqlalchemy_url

LOTS = {lot.lot_id: lot for lot in load_lots()}
DELTA_CONF = {"entities": ["accounts", "contacts"], "freeze": False, "dry_run": False, "overlap_minutes": 5,
              "delete_mode": "soft", "detect_hard_deletes": True}
T1 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
T3 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def run_dag(dagbag, dag_id: str, run_conf: dict | None = None, when: datetime = RUN_DATE, **kw):
    """A lot DAG (or any DAG taking the lot params) through dag.test(); every param spelled out: in-process
    runs keep the task objects, and with them the last conf."""
    dag = dagbag.get_dag(dag_id)
    assert dag is not None, dagbag.import_errors
    # a fixed logical date and run_after give a fixed run_id: calling again reruns the same run
    return dag.test(logical_date=when, run_after=when, run_conf={**LOT_CONF, **(run_conf or {})}, **kw)


def run_delta(dagbag, when, **conf):
    """The cutover DAG through dag.test(), accounts and contacts unless conf says otherwise."""
    return dagbag.get_dag("crm_delta_sync").test(logical_date=when, run_after=when,
                                                 run_conf={**DELTA_CONF, **conf})


def task_states(dr) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def report_of(url: str, lot_id: str, run_id: str) -> dict:
    with engine(url).connect() as conn:
        return conn.execute(sa.text("SELECT report FROM crm_migration.run_report WHERE lot_id = :l AND run_id = :r"),
                            {"l": lot_id, "r": run_id}).scalar_one()


def run_pipeline(legacy: str, url: str, run_id: str, lots=None, loaded: set[str] | None = None) -> None:
    """Every stage of the given lots (default all) as plain functions; only the entities in loaded (default
    all) are loaded."""
    for lot in lots or LOTS.values():
        for entity in lot.entities:
            stages.run_extract(legacy, url, lot, entity, run_id)
            stages.run_cleanse(url, lot, entity, run_id)
            stages.run_dedupe(url, lot, entity, run_id)
            stages.run_transform(url, lot, entity, run_id)
            if loaded is None or entity in loaded:
                load.run_load(url, lot, entity, run_id)
                relations.sync(url, legacy, lot.lot_id, run_id, entity)  # the load stage's second half


def fresh_dagbag():
    """The DAGs parsed again (after a test changed the config directory)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


def fresh_database(database: str) -> str:
    """database dropped (Airflow's `prepare` or `make airflow` creates it again); its URI."""
    url = local_pg.database_url(SERVER, database)
    with engine(to_sqlalchemy_url(local_pg.database_url(SERVER, "postgres")),).connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A real local HTTP receiver (what a pager or Slack's webhook is to the product): every JSON body POSTed
    to it is kept in `received`. Used as a context manager; `url` is where to point alerts."""

    def __init__(self) -> None:
        received: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, predicate, timeout: float = 60) -> list[dict]:
        """The messages matching predicate, once one arrived (or [] after timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.received if predicate(m)]
            if found:
                return found
            time.sleep(0.2)
        return []


def airflow_env(home: Path, port: int, target: str, rehearsal: str, meta: str) -> dict:
    """The environment `make airflow` gets in these tests: its own home, port and databases."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "CRM_DAG_TEST"}
    env.update({"AIRFLOW_HOME": str(home), "CRM_AIRFLOW_PORT": str(port), "AIRFLOW_CONN_CRM_LEGACY": LEGACY_URI,
                "AIRFLOW_CONN_CRM_TARGET": target, "AIRFLOW_CONN_CRM_REHEARSAL": rehearsal,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": to_sqlalchemy_url(meta), "CRM_RETRIES": "0"})
    return env


def target_of(url: str, table: str, entity: str) -> dict[str, str]:
    """legacy id -> the active target row (crm.<table>) standing for it: its own, or its survivor's when it
    was merged into another."""
    with engine(url).connect() as conn:
        own = conn.execute(sa.text(f"SELECT legacy_id, id::text FROM crm.{table} WHERE deleted_at IS NULL")).all()
        merged = conn.execute(sa.text(
            "SELECT m.legacy_id, m.new_id::text FROM crm_migration.merged m JOIN crm." + table
            + " t ON t.id = m.new_id AND t.deleted_at IS NULL WHERE m.entity = :e"), {"e": entity}).all()
    return {**dict(merged), **dict(own)}
