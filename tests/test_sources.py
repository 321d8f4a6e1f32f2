"""Issue 10: the same lots and the same cutover from a MySQL/MariaDB legacy CRM (SuiteCRM's own
database), through the real DAGs, counted by SQL against the legacy and the target databases."""

from __future__ import annotations

import sqlalchemy as sa
from conftest import resolve_quarantined, unaccounted
from test_delta_sync_e2e import T1, T3, _delta
from test_lot_dags_e2e import _report, _run, _states

from crm_migration.db import engine

MARIA = "mysql+pymysql://root@127.0.0.1:3306/crm_test_legacy_maria?charset=utf8mb4"


def test_lots_and_cutover_from_mariadb(dagbag, target_url, monkeypatch):
    from crm_migration.demo_legacy import build_legacy

    counts = build_legacy(MARIA, contacts=400, seed=7)
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", "mysql://root@127.0.0.1:3306/crm_test_legacy_maria?charset=utf8mb4")
    runs = {}
    for lot in ("accounts", "contacts", "opportunities"):
        dr = _run(dagbag, f"crm_lot_{lot}")
        assert str(dr.state) == "success", _states(dr)
        runs[lot] = dr.run_id
        assert unaccounted(MARIA, target_url, lot, lot, dr.run_id) == []
        assert _report(target_url, lot, dr.run_id)["identity_ok"]
    with engine(target_url).connect() as conn:
        people = conn.exec_driver_sql("SELECT count(*) FROM crm.people").scalar_one()
    assert 0 < people <= counts["contacts"]

    with engine(MARIA).begin() as conn:  # the legacy CRM moves on: its own clock, its own date arithmetic
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM contacts WHERE deleted = 0 ORDER BY id LIMIT 10")]
        conn.execute(sa.text("UPDATE contacts SET title = 'From MariaDB', date_modified = UTC_TIMESTAMP()"
                             " WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids})
    engine(MARIA).dispose()
    dr = _delta(dagbag, T1)
    assert str(dr.state) == "success", _states(dr)
    with engine(target_url).connect() as conn:
        titles = dict(conn.execute(sa.text(
            "SELECT x.legacy_id, p.job_title FROM crm.people p JOIN crm_migration.crosswalk x"
            " ON x.entity = 'contacts' AND x.new_id = p.id WHERE x.legacy_id = ANY(:ids)"), {"ids": ids}).all())
    assert len(titles) >= 5 and set(titles.values()) == {"From MariaDB"}  # each edit reached its customer
    assert _report(target_url, "delta", dr.run_id)["identity_ok"]
    resolve_quarantined(MARIA, target_url, entities=("accounts", "contacts", "opportunities"))
    frozen = _delta(dagbag, T3, freeze=True, entities=["accounts", "contacts", "opportunities"])
    assert str(frozen.state) == "success", _states(frozen)  # legacy and target agree, by key and hash
    engine(MARIA).dispose()
