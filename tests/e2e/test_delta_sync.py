"""The cutover DAG end to end: changes, new rows, duplicates, deletes, reruns, writes during the run."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from conftest import legacy_copy, migrated_target, resolve_quarantined, table_checksum
from helpers import report_of, run_delta, T1, T2, T3, task_states

from crm_migration.model.db import engine


def _one(url, sql, **p):
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql), p).one()


def _rows(url, sql, **p):
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql), p).all()


def test_delta_sync_moves_changes_new_rows_and_deletes(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_delta")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    wm_before = _one(target_url, "SELECT modified_at FROM crm_migration.watermark WHERE entity = 'contacts'")[0]

    with engine(target_url).connect() as conn:
        loaded = conn.exec_driver_sql(
            "SELECT p.legacy_id, p.email FROM crm.people p WHERE p.email IS NOT NULL"
            " ORDER BY p.legacy_id LIMIT 4").all()
    (changed, _), (soft_del, _), (hard_del, _), (dup_of, dup_email) = loaded
    dup_target_id = _one(target_url, "SELECT id FROM crm.people WHERE legacy_id = :i", i=dup_of)[0]
    now = "now() AT TIME ZONE 'UTC'"
    with engine(legacy).begin() as conn:
        conn.execute(sa.text(f"UPDATE contacts SET title = 'Chief Cutover Officer', date_modified = {now}"
                             " WHERE id = :id"), {"id": changed})
        conn.execute(sa.text(f"UPDATE contacts SET deleted = 1, date_modified = {now} WHERE id = :id"),
                     {"id": soft_del})
        conn.execute(sa.text("DELETE FROM contacts WHERE id = :id"), {"id": hard_del})
        # a new contact keyed in again for a person already migrated: same e-mail, name with a typo
        conn.execute(sa.text(
            "INSERT INTO contacts (id, salutation, first_name, last_name, title, phone_work, primary_address_country,"
            " lead_source, date_entered, date_modified, deleted)"
            f" SELECT 'new-dup', salutation, first_name, last_name || 'e', title, NULL, primary_address_country,"
            f" lead_source, {now}, {now}, 0 FROM contacts WHERE id = :id"), {"id": dup_of})
        conn.execute(sa.text("INSERT INTO accounts_contacts (id, contact_id, account_id, date_modified)"
                             f" SELECT 'l-new-dup', 'new-dup', account_id, {now} FROM accounts_contacts"
                             " WHERE contact_id = :id AND deleted = 0"), {"id": dup_of})
        conn.execute(sa.text("INSERT INTO email_addresses (id, email_address) VALUES ('e-new-dup', :e)"),
                     {"e": dup_email.upper()})
        conn.exec_driver_sql("INSERT INTO email_addr_bean_rel (id, email_address_id, bean_id, bean_module,"
                             " primary_address) VALUES ('r-new-dup', 'e-new-dup', 'new-dup', 'Contacts', 1)")
        conn.execute(sa.text(
            "INSERT INTO contacts (id, first_name, last_name, primary_address_country, lead_source, date_entered,"
            f" date_modified, deleted) VALUES ('new-person', 'Zoë', 'Nouvelle', 'France', 'Web Site', {now}, {now},"
            " 0)"))
        # issue 39: keyed in again without a surname (the same e-mail): merged into the customer, not quarantined;
        # a person without a surname and no twin: quarantined by the dedupe, with the reason
        conn.execute(sa.text(
            "INSERT INTO contacts (id, first_name, last_name, primary_address_country, date_entered, date_modified,"
            f" deleted) SELECT 'new-nameless-dup', first_name, NULL, primary_address_country, {now}, {now}, 0"
            " FROM contacts WHERE id = :id"), {"id": dup_of})
        conn.execute(sa.text("INSERT INTO email_addresses (id, email_address) VALUES ('e-nameless', :e)"),
                     {"e": dup_email})
        conn.exec_driver_sql("INSERT INTO email_addr_bean_rel (id, email_address_id, bean_id, bean_module,"
                             " primary_address) VALUES ('r-nameless', 'e-nameless', 'new-nameless-dup', 'Contacts', 1)")
        conn.execute(sa.text(
            "INSERT INTO contacts (id, first_name, last_name, primary_address_country, date_entered, date_modified,"
            f" deleted) VALUES ('new-nameless', 'Solène', NULL, 'France', {now}, {now}, 0)"))
    engine(legacy).dispose()

    dr = run_delta(dagbag, T1)
    assert str(dr.state) == "success", task_states(dr)
    assert _one(target_url, "SELECT job_title FROM crm.people WHERE legacy_id = :i", i=changed)[0] == \
        "Chief Cutover Officer"
    assert _one(target_url, "SELECT deleted_at IS NOT NULL FROM crm.people WHERE legacy_id = :i", i=soft_del)[0]
    assert _one(target_url, "SELECT deleted_at IS NOT NULL FROM crm.people WHERE legacy_id = :i", i=hard_del)[0]
    assert _one(target_url, "SELECT count(*) FROM crm.people WHERE legacy_id = 'new-person'")[0] == 1
    # the duplicate joined the customer: one target record, same id, now held by its most recent row
    assert _one(target_url, "SELECT count(*) FROM crm.people WHERE legacy_id IN ('new-dup', :i)", i=dup_of)[0] == 1
    xw = dict(_rows(target_url, "SELECT legacy_id, new_id FROM crm_migration.crosswalk WHERE entity = 'contacts'"
                                " AND legacy_id IN ('new-dup', :i)", i=dup_of))
    assert xw == {"new-dup": dup_target_id, dup_of: dup_target_id}
    assert _one(target_url, "SELECT legacy_id FROM crm.people WHERE id = :i", i=dup_target_id)[0] == "new-dup"
    assert _one(target_url, "SELECT new_id FROM crm_migration.crosswalk WHERE entity = 'contacts' AND legacy_id ="
                            " 'new-nameless-dup'")[0] == dup_target_id
    assert _rows(target_url, "SELECT legacy_id, stage, reason_code FROM stg.quarantine WHERE run_id = :r AND"
                             " legacy_id LIKE 'new-%'", r=dr.run_id) == [("new-nameless", "dedupe", "REQUIRED_MISSING")]
    wm_after = _one(target_url, "SELECT modified_at FROM crm_migration.watermark WHERE entity = 'contacts'")[0]
    assert wm_after > wm_before

    rep = report_of(target_url, "delta", dr.run_id)
    assert rep["identity_ok"]
    c = rep["cutover"]
    assert c["window_seconds"] > 0 and c["rows_per_entity"]["contacts"]["deleted"] == 2
    assert rep["entities"]["contacts"]["clusters"]["flipped"] >= 1  # the duplicate joined and holds the record

    before = {t: table_checksum(target_url, t) for t in ("crm.companies", "crm.people")}
    assert str(run_delta(dagbag, T1).state) == "success"  # the same delta run again
    assert {t: table_checksum(target_url, t) for t in before} == before
    assert str(run_delta(dagbag, T2).state) == "success"  # a new run, nothing changed (the overlap re-reads)
    assert {t: table_checksum(target_url, t) for t in before} == before
    assert resolve_quarantined(legacy, target_url) > 0  # the demo's bad rows, dealt with by the data owner
    frozen = run_delta(dagbag, T3, freeze=True)  # final run: nothing left behind
    assert str(frozen.state) == "success", task_states(frozen)


def test_row_changed_during_the_run_is_caught_by_the_next(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_delta2")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    with engine(target_url).connect() as conn:
        victim = conn.exec_driver_sql("SELECT legacy_id FROM crm.people ORDER BY legacy_id LIMIT 1").scalar_one()
    stop, written = threading.Event(), []

    def keep_writing():  # a sales rep still typing during the cutover
        eng = sa.create_engine(legacy)
        i = 0
        while not stop.is_set():
            i += 1
            with eng.begin() as conn:
                conn.execute(sa.text("UPDATE contacts SET title = :t, date_modified = now() AT TIME ZONE 'UTC'"
                                     " WHERE id = :id"), {"t": f"edit {i}", "id": victim})
            written.append(f"edit {i}")
            stop.wait(0.05)
        eng.dispose()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        first = run_delta(dagbag, T1, entities=["contacts"])
    finally:
        stop.set()
        writer.join()
    assert str(first.state) == "success", task_states(first)
    assert len(written) > 1
    resolve_quarantined(legacy, target_url, entities=("contacts",))
    frozen = run_delta(dagbag, T2, entities=["contacts"], freeze=True)  # legacy now quiet: the final run
    assert str(frozen.state) == "success", task_states(frozen)
    assert _one(target_url, "SELECT job_title FROM crm.people WHERE legacy_id = :i", i=victim)[0] == written[-1]


def test_freeze_fails_when_something_is_left_behind(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_delta3")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    with engine(legacy).begin() as conn:  # a contact whose e-mail cannot be fixed: quarantined
        conn.exec_driver_sql("INSERT INTO contacts (id, last_name, date_modified, deleted) VALUES"
                             " ('late-bad', 'Late', now() AT TIME ZONE 'UTC', 0)")
        conn.exec_driver_sql("INSERT INTO email_addresses (id, email_address) VALUES ('e-late', 'late@@x')")
        conn.exec_driver_sql("INSERT INTO email_addr_bean_rel (id, email_address_id, bean_id, bean_module,"
                             " primary_address) VALUES ('r-late', 'e-late', 'late-bad', 'Contacts', 1)")
    dr = run_delta(dagbag, T1, freeze=True)
    states = task_states(dr)
    assert states["freeze_check"] == "failed" and states["watcher"] == "failed"
    assert str(dr.state) == "failed"
