"""Errors classified by kind, whatever the driver: only a lost or refused connection is retried.
Real servers produce every error here: the machine's PostgreSQL and MariaDB."""

from __future__ import annotations


from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from conftest import SERVER, TARGET_URL, mariadb_up
from helpers import free_port

from crm_migration.model.errors import is_transient

MARIADB = "mysql+pymysql://root@127.0.0.1:3306/mysql"


def _error(url: str, sql: str = "SELECT 1") -> BaseException:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            conn.exec_driver_sql(sql)
    except Exception as exc:  # noqa: BLE001 - the error is what the test looks at
        return exc
    finally:
        eng.dispose()
    raise AssertionError(f"{sql!r} on {url} did not fail")


def test_postgres_errors_by_kind():
    base = sa.engine.make_url(TARGET_URL)
    assert not is_transient(_error(base.set(database="crm_no_such_database").render_as_string(False)))
    assert not is_transient(_error(TARGET_URL, "SELECT no_such_column FROM pg_class"))
    assert not is_transient(_error(TARGET_URL, "SELEC 1"))
    assert not is_transient(_error(TARGET_URL, "SELECT 1/0"))
    if "host=" not in SERVER:  # the machine's server: a TCP port nobody listens on
        refused = base.set(host="127.0.0.1", port=free_port()).render_as_string(False)
        assert is_transient(_error(refused))


@pytest.mark.skipif(not mariadb_up(), reason="MariaDB is not running on 127.0.0.1:3306")
def test_mariadb_errors_by_kind():
    assert not is_transient(_error(MARIADB.replace("/mysql", "/crm_no_such_database")))
    assert not is_transient(_error(MARIADB, "SELECT no_such_column FROM user"))
    assert not is_transient(_error(MARIADB, "SELEC 1"))
    assert is_transient(_error(MARIADB.replace(":3306", f":{free_port()}")))


def test_missing_target_database_fails_the_task_at_once(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from crm_migration.dag.tasks import prepare

    missing = sa.engine.make_url(TARGET_URL).set(database="crm_no_such_target", drivername="postgresql")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_TARGET", missing.render_as_string(False))
    ti = SimpleNamespace(task_id="prepare", try_number=1, max_tries=0)
    with pytest.raises(AirflowFailException, match="does not exist") as failed:
        prepare("accounts", run_id="manual__x", params={}, ti=ti)
    message = str(failed.value)  # on-call reads this first: one line, the cause, what to clear
    assert "\n" not in message and message.endswith(
        "clear prepare with its downstream tasks (Clear Task Instance, 'Downstream' left selected as the dialog"
        " opens); a rerun is safe: every task rewrites only its own slice")


def test_a_failed_gate_names_the_check_the_value_and_the_threshold(target_url):
    from crm_migration.checks.quality import GateFailed, gate

    with pytest.raises(GateFailed) as failed:  # an empty slice: the extract gate's row count must be above 0
        gate(target_url, "accounts", "extract", "accounts", "run_with_no_rows")
    first = str(failed.value).splitlines()[0]
    assert first.startswith("gate extract of accounts failed: check '") and "measured 0" in first, first
    assert "threshold must be greater than 0" in first, first


def test_gates_run_from_threads_side_by_side(target_url):
    """The delta's entities run in threads and their gates with them: Soda's parser is not thread-safe
    (unguarded, two verifications at once fail with YAML or index errors); every gate here must come out
    as it does alone: evaluated, no error."""
    from concurrent.futures import ThreadPoolExecutor

    from crm_migration.checks.quality import run_soda

    jobs = [(e, s) for e in ("users", "accounts", "contacts", "leads") for s in ("extract", "cleanse", "load")] * 2
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda job: run_soda(target_url, job[0], job[1], "accounts", "threads"), jobs))
    assert [o.error for o in outcomes] == [None] * len(jobs)
    assert all(o.checks for o in outcomes)


def test_connections_keep_their_dialect():
    from types import SimpleNamespace

    from crm_migration.model.db import connection_uri, to_sqlalchemy_url

    def conn(kind, **kw):
        return SimpleNamespace(conn_type=kind, login=kw.get("login"), password=kw.get("password"),
                               host=kw.get("host", "db"), port=kw.get("port"), schema=kw.get("schema", "crm"),
                               extra_dejson=kw.get("extra", {}))

    assert to_sqlalchemy_url(connection_uri(conn("mysql", login="root"))) == "mysql+pymysql://root@db:3306/crm"
    assert to_sqlalchemy_url(connection_uri(conn("postgres", login="u", password="p@ss"))) == \
        "postgresql+psycopg://u:p%40ss@db:5432/crm"
    assert to_sqlalchemy_url(connection_uri(conn("mssql", port=14330))).startswith("mssql+pymssql://@db:14330/")
    assert to_sqlalchemy_url("mariadb://root@127.0.0.1:3306/legacy") == "mysql+pymysql://root@127.0.0.1:3306/legacy"


def test_a_failed_entity_stops_only_the_entities_that_reference_it(target_url, monkeypatch):
    """The delta's one `sync` task: leads' gate fails; opportunities (its sibling) still syncs, activities
    (which references leads) is not loaded; every transform waits for the entities it references; the
    task fails naming each, with what to clear."""
    import threading

    from airflow.sdk.exceptions import AirflowFailException

    from crm_migration.ops import pipeline
    from crm_migration.checks.quality import GateFailed
    from crm_migration.dag.tasks import run_delta_sync

    started, loaded, lock = [], [], threading.Lock()

    def fake_run_all(run, before=None):  # noqa: ANN001, ANN202
        with lock:
            started.append(run.entity)
        if run.entity == "leads":
            raise GateFailed("gate dedup of leads failed: duplicate_count(legacy_id) = 2, threshold must be 0")
        before("transform")  # waits for the referenced entities' loads
        with lock:
            loaded.append(run.entity)
        return {}

    monkeypatch.setattr(pipeline, "run_all", fake_run_all)
    ti = SimpleNamespace(task_id="sync", try_number=1, max_tries=0)
    with pytest.raises(AirflowFailException) as failed:
        run_delta_sync(run_id="manual__x", params={}, ti=ti)
    assert sorted(started) == ["accounts", "activities", "contacts", "leads", "opportunities", "users"]
    assert loaded[:3] == ["users", "accounts", "contacts"] and loaded[3:] == ["opportunities"]  # parents first
    message = str(failed.value)
    assert "\n" not in message and "leads" in message and "duplicate_count" in message, message
    assert "not loaded: activities" in message and "synced: users, accounts, contacts, opportunities" in message
    assert "clear sync with its downstream tasks" in message
