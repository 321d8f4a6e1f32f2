"""crm_rollback puts the target back byte for byte, refuses to orphan rows, and dry-runs."""

from __future__ import annotations

from datetime import datetime, UTC

from conftest import legacy_copy, table_checksum
from helpers import run_dag, task_states

from crm_migration.model.db import engine

TABLES = ("crm.companies", "crm.people")
LATER = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


def _sums(url):
    return {t: table_checksum(url, t) for t in TABLES}


def _watermark(url):
    with engine(url).connect() as conn:
        return dict(conn.exec_driver_sql("SELECT entity, modified_at FROM crm_migration.watermark").all())


def _rollback(dagbag, lot_id, run_id, dry_run=False, when=LATER):
    return dagbag.get_dag("crm_rollback").test(logical_date=when, run_after=when,
                                               run_conf={"lot_id": lot_id, "run_id": run_id, "dry_run": dry_run})


def test_rollback_restores_the_target_byte_for_byte(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_rollback")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    empty = _sums(target_url)
    acc = run_dag(dagbag, "crm_lot_accounts")
    con = run_dag(dagbag, "crm_lot_contacts")
    assert str(acc.state) == str(con.state) == "success"
    after_first, wm_first, xw_first = _sums(target_url), _watermark(target_url), _crosswalk(target_url)

    with engine(legacy).begin() as conn:  # the legacy CRM moves on; the contacts lot is loaded again
        conn.exec_driver_sql("UPDATE contacts SET title = 'Changed', date_modified = now() AT TIME ZONE 'UTC'"
                             " WHERE id IN (SELECT id FROM contacts WHERE deleted = 0 ORDER BY id LIMIT 25)")
        conn.exec_driver_sql("INSERT INTO contacts (id, first_name, last_name, date_modified, deleted)"
                             " VALUES ('brand-new', 'Ada', 'Lovelace', now() AT TIME ZONE 'UTC', 0)")
    second = run_dag(dagbag, "crm_lot_contacts", when=LATER)
    assert str(second.state) == "success"
    after_second = _sums(target_url)
    assert after_second != after_first
    # the run cleared and rerun: its pre-images must still describe the target before its first pass
    assert str(run_dag(dagbag, "crm_lot_contacts", when=LATER).state) == "success"
    assert _sums(target_url) == after_second

    dry = _rollback(dagbag, "contacts", second.run_id, dry_run=True)
    assert str(dry.state) == "success" and _sums(target_url) == after_second

    undo = _rollback(dagbag, "contacts", second.run_id, when=datetime(2026, 11, 21, 4, tzinfo=UTC))
    assert str(undo.state) == "success", task_states(undo)
    assert _sums(target_url) == after_first
    assert _watermark(target_url) == wm_first
    assert _crosswalk(target_url) == xw_first  # merged rows that survived the second run are merged again
    replay = _rollback(dagbag, "contacts", second.run_id, when=datetime(2026, 11, 21, 4, 30, tzinfo=UTC))
    assert task_states(replay)["rollback"] == "failed"  # recorded: an old rollback cannot be replayed
    assert _sums(target_url) == after_first
    with engine(target_url).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM crm_migration.crosswalk WHERE legacy_id = 'brand-new'"
                                    ).scalar_one() == 0

    refused = _rollback(dagbag, "accounts", acc.run_id, when=datetime(2026, 11, 21, 5, tzinfo=UTC))
    assert task_states(refused)["rollback"] == "failed" and str(refused.state) == "failed"
    assert _sums(target_url) == after_first  # one transaction: nothing half done

    for i, (lot, run) in enumerate((("contacts", con.run_id), ("accounts", acc.run_id))):
        dr = _rollback(dagbag, lot, run, when=datetime(2026, 11, 21, 6 + i, tzinfo=UTC))
        assert str(dr.state) == "success", task_states(dr)
    assert _sums(target_url) == empty
    assert _watermark(target_url) == {}


def test_rollback_param_schema_rejects_sql_in_run_id(dagbag):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(dagbag.get_dag("crm_rollback").params)
    try:
        params.update({"lot_id": "contacts", "run_id": "x'; DROP TABLE crm.people; --"})
        params.validate()
    except ParamValidationError:
        return
    raise AssertionError("run_id with SQL in it was accepted")


def _crosswalk(url):
    with engine(url).connect() as conn:
        return conn.exec_driver_sql("SELECT entity, legacy_id, new_id, merged_into FROM crm_migration.crosswalk"
                                    " ORDER BY 1, 2").all()
