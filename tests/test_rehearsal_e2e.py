"""The nightly rehearsal: rebuilds its own target, runs every lot and a delta, compares, forecasts."""

from __future__ import annotations

from datetime import datetime, timezone

from conftest import REHEARSAL_URI, TARGET_URL, table_checksum
from test_lot_dags_e2e import _states

from crm_migration.db import create_database_if_missing, engine, to_sqlalchemy_url


def test_two_nights_of_rehearsal(dagbag, target_url):
    url = to_sqlalchemy_url(REHEARSAL_URI)
    create_database_if_missing(url)
    real_before = table_checksum(TARGET_URL, "crm.people")
    dag = dagbag.get_dag("crm_rehearsal")
    for night in (1, 2):
        when = datetime(2026, 11, 10 + night, 2, 0, tzinfo=timezone.utc)
        dr = dag.test(logical_date=when, run_after=when, run_conf={"expected_changes": 5000})
        assert str(dr.state) == "success", _states(dr)
    with engine(url).connect() as conn:
        history = conn.exec_driver_sql("SELECT run_id, summary FROM rehearsal.history ORDER BY finished_at").all()
        people = conn.exec_driver_sql("SELECT count(*) FROM crm.people").scalar_one()
    assert len(history) >= 2 and people > 0
    last = history[-1].summary
    assert last["comparison"]["previous"] == history[-2].run_id
    assert last["comparison"]["counts_changed"] == []  # same legacy data, same counts, night after night
    assert last["forecast"]["expected_changes"] == 5000 and last["forecast"]["window_seconds"] > 0
    assert all(c["identity_ok"] for ents in last["counts"].values() for c in ents.values())
    assert table_checksum(TARGET_URL, "crm.people") == real_before  # the real target is never touched
