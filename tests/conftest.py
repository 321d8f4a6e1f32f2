"""Test session: a real PostgreSQL (the machine's on 127.0.0.1:5432, else an embedded one),
a demo legacy CRM, a migrated SQLite Airflow metadata DB in a temp AIRFLOW_HOME.

The environment is set before anything imports Airflow. `make test` runs the suite in two processes
(pytest-xdist, one test module at a time per process): each process has its own Airflow home and its own
databases (`db_name` suffixes the worker's name), so no test sees another's rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, UTC
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="crm-test-airflow-")
os.environ.update({
    "AIRFLOW_HOME": _AIRFLOW_HOME,
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "SODA_CORE_TELEMETRY_ENABLED": "false",
    "CRM_RETRIES": "0",
    "CRM_DAG_TEST": "1",  # DAGs run by dag.test() here: no deadline alert (Airflow 3.3.2 cannot test one)
    "CRM_RETRY_DELAY_SECONDS": "1",
    "CRM_REPORT_DIR": str(Path(_AIRFLOW_HOME) / "reports"),
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "plugins"), os.environ.get("PYTHONPATH")])),
    # Airflow's own login (simple auth manager): one operator whose password the tests know
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "ops:admin",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(Path(_AIRFLOW_HOME) / "passwords.json"),
})
OPS_PASSWORD = "ops-test-password"
(Path(_AIRFLOW_HOME) / "passwords.json").write_text(json.dumps({"ops": OPS_PASSWORD}))

from crm_demo import local_pg  # noqa: E402
from crm_migration.model.db import create_database_if_missing, engine, to_sqlalchemy_url  # noqa: E402

TEST_CONTACTS = 400
SERVER = local_pg.server_url()
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def db_name(name: str) -> str:
    """A test database's name in this test process (pytest-xdist workers each have their own)."""
    return f"{name}_{WORKER}" if WORKER else name


LEGACY_DB, TARGET_DB = db_name("crm_test_legacy"), db_name("crm_test_target")
LEGACY_URI = local_pg.database_url(SERVER, LEGACY_DB)
TARGET_URI = local_pg.database_url(SERVER, TARGET_DB)
os.environ["AIRFLOW_CONN_CRM_LEGACY"] = LEGACY_URI
os.environ["AIRFLOW_CONN_CRM_TARGET"] = TARGET_URI
REHEARSAL_URI = local_pg.database_url(SERVER, db_name("crm_test_rehearsal"))
os.environ["AIRFLOW_CONN_CRM_REHEARSAL"] = REHEARSAL_URI
LEGACY_URL = to_sqlalchemy_url(LEGACY_URI)
TARGET_URL = to_sqlalchemy_url(TARGET_URI)


@pytest.fixture(scope="session")
def legacy_url() -> str:
    from crm_demo.demo_legacy import build_legacy

    build_legacy(LEGACY_URL, contacts=TEST_CONTACTS, seed=7)
    return LEGACY_URL


def reset_target() -> None:
    from crm_migration.model.db import ensure_target_schema

    create_database_if_missing(TARGET_URL)
    with engine(TARGET_URL).begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS crm, crm_migration, stg CASCADE")
    ensure_target_schema(TARGET_URL)


@pytest.fixture()
def target_url(legacy_url) -> str:
    """An empty target CRM (schemas rebuilt) for each test that asks for it."""
    reset_target()
    return TARGET_URL


@pytest.fixture(scope="session")
def airflow_db() -> str:
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True,
                   env=os.environ.copy())
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def airflow_api(airflow_db):
    """Airflow's real API server app in this process (the UI's backend, plugins mounted, its auth manager),
    and a JWT for the operator, as the UI holds it after login."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    client = TestClient(create_app("all"))
    token = client.post("/auth/token", json={"username": "ops", "password": OPS_PASSWORD}).json()["access_token"]
    return client, token


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def table_checksum(url: str, table: str) -> tuple[int, str]:
    with engine(url).connect() as conn:
        return tuple(conn.exec_driver_sql(
            f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t.legacy_id)), '') FROM {table} t"
        ).one())


def legacy_copy(name: str) -> tuple[str, str]:
    """A copy of the session's legacy CRM (for tests that change legacy data): (Airflow URI, SQLAlchemy URL)."""
    from crm_migration.model.db import engine as _engine

    name = db_name(name)
    _engine(LEGACY_URL).dispose()
    admin = sa.create_engine(LEGACY_URL.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {LEGACY_DB}")
    admin.dispose()
    uri = LEGACY_URI.replace(f"/{LEGACY_DB}", f"/{name}")
    return uri, to_sqlalchemy_url(uri)


RUN_DATE = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
# every param spelled out: in-process dag.test() runs keep the task objects, and with them the last conf
LOT_CONF = {"sample_fraction": 1.0, "dry_run": False, "only_quarantined": False, "quarantine_run_id": None}
_SNAPSHOTS: dict[tuple[str, ...], dict] = {}


def _clone_database(source: str, copy: str) -> None:
    """copy := a new database made from source (which nobody may be connected to meanwhile)."""
    from crm_migration.model.db import engine as _engine

    _engine(TARGET_URL).dispose()
    admin = sa.create_engine(TARGET_URL.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"
                             " AND pid <> pg_backend_pid()"), {"d": source})
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {copy} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {copy} TEMPLATE {source}")
    admin.dispose()


def migrated_target(dagbag, *lots: str) -> dict:
    """The target as the given lot DAGs leave it on the session's legacy CRM (a test's fresh legacy_copy,
    not yet changed): the lots run through dag.test() once per session, then each test starts from a copy
    of that database (seconds instead of a minute of DAG runs). Returns lot -> its run (run_id, state)."""
    from types import SimpleNamespace

    snapshot = db_name("crm_test_snap_" + "_".join(lots))
    if lots not in _SNAPSHOTS:
        runs = {}
        for lot in lots:
            dr = dagbag.get_dag(f"crm_lot_{lot}").test(logical_date=RUN_DATE, run_after=RUN_DATE, run_conf=LOT_CONF)
            assert str(dr.state) == "success", {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
            runs[lot] = SimpleNamespace(run_id=dr.run_id, state=dr.state, logical_date=dr.logical_date)
        _clone_database(TARGET_DB, snapshot)
        _SNAPSHOTS[lots] = runs
    else:
        _clone_database(snapshot, TARGET_DB)
    return _SNAPSHOTS[lots]


LEGACY_TABLES = {"users": ("users",), "accounts": ("accounts",), "contacts": ("contacts",),
                 "opportunities": ("opportunities",), "leads": ("leads",),
                 "activities": ("calls", "meetings", "notes", "tasks")}


def resolve_quarantined(legacy: str, url: str, entities=("accounts", "contacts")) -> int:
    """What a data owner does before the final freeze: every row still quarantined is dealt with in
    the legacy CRM (here: deleted there, so the next delta excludes it). Returns the rows touched."""
    with engine(url).connect() as conn:
        ids = conn.exec_driver_sql("SELECT entity, legacy_id FROM crm_migration.legacy_ledger"
                                   " WHERE fate = 'quarantined'").all()
    n = 0
    with engine(legacy).begin() as conn:
        now = "UTC_TIMESTAMP()" if conn.dialect.name in ("mysql", "mariadb") else "now() AT TIME ZONE 'UTC'"
        for entity, legacy_id in ids:
            for table in LEGACY_TABLES[entity] if entity in entities else ():
                n += conn.execute(sa.text(f"UPDATE {table} SET deleted = 1,"
                                          f" date_modified = {now} WHERE id = :i"),
                                  {"i": legacy_id}).rowcount
    engine(legacy).dispose()
    return n


TARGET_TABLES = {"users": "crm.owners", "accounts": "crm.companies", "contacts": "crm.people",
                 "opportunities": "crm.opportunities", "leads": "crm.leads", "activities": "crm.activities"}


def unaccounted(legacy: str, url: str, entity: str, lot_id: str, run_id: str) -> list[str]:
    """Legacy ids of the entity (read from the legacy database) that are none of: a target row, a merged
    entry whose survivor is a target row, quarantined or excluded by the run. Plain SQL anti-joins,
    independent of the product's own reconciliation."""
    with engine(legacy).connect() as conn:
        ids = [r[0] for r in conn.exec_driver_sql(" UNION ALL ".join(f"SELECT id FROM {t}"
                                                                     for t in LEGACY_TABLES[entity]))]
    table = TARGET_TABLES[entity]
    with engine(url).connect() as conn:
        return [r[0] for r in conn.execute(sa.text(
            f"SELECT i FROM unnest(CAST(:ids AS text[])) i"
            f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.legacy_id = i)"
            f"   AND NOT EXISTS (SELECT 1 FROM crm_migration.merged m JOIN {table} t ON t.id = m.new_id"
            "                    WHERE m.entity = :e AND m.legacy_id = i)"
            "   AND NOT EXISTS (SELECT 1 FROM stg.quarantine q WHERE q.entity = :e AND q.legacy_id = i"
            "                    AND q.lot_id = :l AND q.run_id = :r)"
            "   AND NOT EXISTS (SELECT 1 FROM stg.excluded x WHERE x.entity = :e AND x.legacy_id = i"
            "                    AND x.lot_id = :l AND x.run_id = :r)"),
            {"ids": ids, "e": entity, "l": lot_id, "r": run_id})]


def mariadb_up() -> bool:
    """The machine's MariaDB (MySQL legacy sources) on 127.0.0.1:3306."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", 3306), timeout=1).close()
        return True
    except OSError:
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: runs DAGs end to end (dag.test()); `make test-quick` leaves them out")


# The longest test files, longest first (measured with --durations on 2026-12-07: the browser file ~5.5 min,
# the Celery file ~2 min, then ~1-2 min each). `make test` runs files on two processes (--dist loadfile) in
# this order (--no-loadscope-reorder): started last, the browser file ran alone for its last minutes.
LONGEST_FIRST = ("e2e/test_ui_browser.py", "e2e/test_celery.py", "e2e/test_lot_dags.py", "e2e/test_go_live.py",
                 "e2e/test_sources.py", "e2e/test_loss_paths.py", "e2e/test_rollback.py",
                 "e2e/test_merge_lifecycle.py", "e2e/test_delta_sync.py", "e2e/test_relations.py",
                 "e2e/test_config_driven.py", "db/test_matching.py")


def pytest_collection_modifyitems(config, items):
    """Every test that runs a DAG (it asks for the Airflow database) is end to end; the longest files
    first (LONGEST_FIRST), the rest in their order."""
    for item in items:
        if {"dagbag", "airflow_db", "phased_config", "own_config"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)

    def rank(item) -> int:
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)
