"""Issue 14 (tracker 36): a go-live you can trust. Each silent path reproduced through the real DAGs
(dag.test()) on real PostgreSQL; what the target holds is counted by SQL against the legacy and the
target databases, never read from the product's own report."""

from __future__ import annotations

from datetime import datetime, UTC

import pytest
import sqlalchemy as sa
from test_lot_dags_e2e import _run, _states

from crm_migration.db import engine, ensure_target_schema
from crm_migration.ddl import TargetRebuilt

LATER = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


def _scalar(url: str, sql: str, **p):
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql), p).scalar()


def _lots(dagbag, *lots: str) -> None:
    for lot in lots:
        dr = _run(dagbag, f"crm_lot_{lot}")
        assert str(dr.state) == "success", _states(dr)


def test_a_table_that_held_rows_is_never_rebuilt_in_silence(dagbag, target_url):
    _lots(dagbag, "accounts", "contacts")
    held = _scalar(target_url, "SELECT count(*) FROM crm.people")
    assert held > 0
    with engine(target_url).begin() as conn:  # a dropped table, a restore gone wrong, the wrong database
        conn.exec_driver_sql("ALTER TABLE crm.people RENAME TO people_moved_away")
    dr = _run(dagbag, "crm_lot_contacts", when=LATER)
    states = _states(dr)
    assert str(dr.state) == "failed" and states["prepare"] == "failed", states
    assert states["load_contacts"] != "success"
    # before: prepare re-created crm.people empty and the lot loaded every row into it as inserts
    assert _scalar(target_url, "SELECT to_regclass('crm.people')") is None
    assert _scalar(target_url, "SELECT count(*) FROM crm.people_moved_away") == held
    with pytest.raises(TargetRebuilt, match=r"crm\.people \(contacts\) is missing: the migration left \d+ rows"):
        ensure_target_schema(target_url)

    with engine(target_url).begin() as conn:  # emptied outside the migration: the same
        conn.exec_driver_sql("ALTER TABLE crm.people_moved_away RENAME TO people")
        conn.exec_driver_sql("CREATE TABLE crm.people_copy AS SELECT * FROM crm.people")
        conn.exec_driver_sql("DELETE FROM crm.people")
    with pytest.raises(TargetRebuilt, match=r"crm\.people \(contacts\) holds none of them"):
        ensure_target_schema(target_url)
    with engine(target_url).begin() as conn:  # put back: the next run goes on
        conn.exec_driver_sql("INSERT INTO crm.people SELECT * FROM crm.people_copy")
    ensure_target_schema(target_url)
