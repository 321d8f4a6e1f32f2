"""Issue 14 (tracker 36): a go-live you can trust. Each silent path reproduced through the real DAGs
(dag.test()) on real PostgreSQL; what the target holds is counted by SQL against the legacy and the
target databases, never read from the product's own report."""

from __future__ import annotations

import csv
from datetime import datetime, UTC

import pytest
import sqlalchemy as sa
from conftest import legacy_copy, migrated_target
from helpers import run_dag, run_delta, run_pipeline, T1, T2, task_states

from crm_migration.stages.content import verify_target
from crm_migration.model.db import engine, ensure_target_schema
from crm_migration.model.ddl import TargetRebuilt
from crm_migration.stages.run import quarantined_ids

LATER = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


def _scalar(url: str, sql: str, **p):
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql), p).scalar()


def _rows(url: str, sql: str, **p) -> list:
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql), p).all()


def _single_customers(url: str, n: int) -> list[str]:
    """The first n loaded people that are no merged customer (one legacy row, one target row)."""
    return [r[0] for r in _rows(url, "SELECT legacy_id FROM crm.people p WHERE deleted_at IS NULL AND NOT EXISTS"
                                     " (SELECT 1 FROM crm_migration.merged m WHERE m.new_id = p.id)"
                                     " ORDER BY legacy_id LIMIT :n", n=n)]


def _lots(dagbag, *lots: str) -> None:
    for lot in lots:
        dr = run_dag(dagbag, f"crm_lot_{lot}")
        assert str(dr.state) == "success", task_states(dr)


def test_a_table_that_held_rows_is_never_rebuilt_in_silence(dagbag, target_url):
    migrated_target(dagbag, "accounts", "contacts")
    held = _scalar(target_url, "SELECT count(*) FROM crm.people")
    assert held > 0
    with engine(target_url).begin() as conn:  # a dropped table, a restore gone wrong, the wrong database
        conn.exec_driver_sql("ALTER TABLE crm.people RENAME TO people_moved_away")
    dr = run_dag(dagbag, "crm_lot_contacts", when=LATER)
    states = task_states(dr)
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


NOW = "now() AT TIME ZONE 'UTC'"
# activities (notes, tasks) on a company that also name a contact: the contact is an optional link
_NAMED_CONTACTS = ("SELECT id, contact_id FROM notes WHERE parent_type = 'Accounts' AND contact_id IS NOT NULL"
                   " AND deleted = 0 UNION ALL SELECT id, contact_id FROM tasks WHERE parent_type = 'Accounts'"
                   " AND contact_id IS NOT NULL AND deleted = 0")


def _set_emails(legacy: str, contact_ids: list[str], template: str) -> None:
    with engine(legacy).begin() as conn:
        for i, cid in enumerate(contact_ids):
            conn.execute(sa.text(
                "UPDATE email_addresses SET email_address = :m, date_modified = now() AT TIME ZONE 'UTC' WHERE id IN"
                " (SELECT email_address_id FROM email_addr_bean_rel WHERE bean_id = :c AND primary_address = 1)"),
                {"m": template.format(i=i), "c": cid})
            conn.execute(sa.text(f"UPDATE contacts SET date_modified = {NOW} WHERE id = :c"), {"c": cid})
    engine(legacy).dispose()


def _links_missing(legacy: str, url: str) -> list[str]:
    """Activities whose legacy contact is a loaded person but whose target row does not point at it: by SQL
    on both databases, not by the product's own checks."""
    named = dict(_rows(legacy, _NAMED_CONTACTS))
    got = _rows(url, "SELECT a.legacy_id, a.contact_id, p.id FROM crm.activities a, unnest(CAST(:ids AS text[]),"
                     " CAST(:cs AS text[])) AS n(aid, cid) JOIN crm.people p ON p.legacy_id = n.cid"
                     " WHERE a.legacy_id = n.aid", ids=list(named), cs=list(named.values()))
    return sorted(aid for aid, have, want in got if have != want)


def test_children_loaded_before_their_parent_are_relinked(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_relink")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    contacts = sorted({c for _, c in _rows(legacy, _NAMED_CONTACTS)
                       if _rows(legacy, "SELECT 1 FROM email_addr_bean_rel WHERE bean_id = :c AND primary_address = 1",
                                c=c)})[:6]
    assert len(contacts) >= 3
    _set_emails(legacy, contacts, "broken{i}@@example")  # the contacts are quarantined (EMAIL_INVALID)
    _lots(dagbag, "users", "accounts", "contacts", "activities")
    waiting = _rows(target_url, "SELECT count(*) FROM crm.activities a JOIN crm_migration.written w"
                                " ON w.entity = 'activities' AND w.id = a.id WHERE a.contact_id IS NULL"
                                " AND w.links -> 'contact_id' ->> 1 = ANY(:c)", c=contacts)[0][0]
    assert waiting >= 3  # loaded without their contact (on_missing: "null")

    _set_emails(legacy, contacts, "fixed.contact{i}@example.com")  # the data owner fixes them
    dr = run_delta(dagbag, T1, entities=["contacts"])
    assert str(dr.state) == "success", task_states(dr)
    assert _rows(target_url, "SELECT count(*) FROM crm.people WHERE legacy_id = ANY(:c)", c=contacts)[0][0] == len(
        contacts)
    # before: the activities kept their empty contact (waiting of them) and every check passed
    assert _links_missing(legacy, target_url) == []
    with engine(target_url).connect() as conn:
        assert verify_target(target_url, "activities").counts["link_missing"] == 0
        pre = conn.execute(sa.text("SELECT count(*) FROM crm_migration.pre_image WHERE entity = 'activities'"
                                   " AND run_id = :r"), {"r": dr.run_id}).scalar()
    assert pre == waiting  # each relinked row can be rolled back
    report = _rows(target_url, "SELECT report FROM crm_migration.run_report WHERE lot_id = 'delta' AND run_id = :r",
                   r=dr.run_id)[0][0]
    assert report["entities"]["contacts"]["relinked"] == {"activities": waiting}


def test_an_edit_made_in_the_new_crm_is_kept_and_reported(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_drift")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    ids = _single_customers(target_url, 4)
    with engine(target_url).begin() as conn:  # a sales rep works in the new CRM between phases
        conn.execute(sa.text("UPDATE crm.people SET job_title = 'edited in the new CRM' WHERE legacy_id = ANY(:i)"),
                     {"i": ids[:2]})
    with engine(target_url).connect() as conn:
        found = verify_target(target_url, "contacts")
    assert found.counts["drifted"] == 2 and all("(job_title)" in s for s in found.samples["drifted"])

    with engine(legacy).begin() as conn:  # the legacy CRM changes another field of the same rows
        conn.execute(sa.text(f"UPDATE contacts SET phone_mobile = '+33 6 12 34 56 78', date_modified = {NOW}"
                             " WHERE id = ANY(:i)"), {"i": ids})
    engine(legacy).dispose()
    dr = run_delta(dagbag, T1, entities=["contacts"])
    assert str(dr.state) == "success", task_states(dr)
    got = dict(_rows(target_url, "SELECT legacy_id, job_title FROM crm.people WHERE legacy_id = ANY(:i)", i=ids[:2]))
    assert set(got.values()) == {"edited in the new CRM"}  # before: both edits overwritten, nothing reported
    mobiles = _rows(target_url, "SELECT count(*) FROM crm.people WHERE legacy_id = ANY(:i) AND mobile = '+33612345678'",
                    i=ids)
    assert mobiles[0][0] == 4  # the legacy change still arrives
    conflicts = _rows(target_url, "SELECT legacy_id, kept, policy FROM crm_migration.edit_conflict WHERE run_id = :r"
                                  " ORDER BY legacy_id", r=dr.run_id)
    assert [(lid, list(kept), pol) for lid, kept, pol in conflicts] == [(i, ["job_title"], "flag") for i in ids[:2]]
    with engine(target_url).connect() as conn:  # flag: still a conflict for a data owner, until settled
        assert verify_target(target_url, "contacts").counts["drifted"] == 2
    report = _rows(target_url, "SELECT report FROM crm_migration.run_report WHERE lot_id = 'delta' AND run_id = :r",
                   r=dr.run_id)[0][0]
    assert report["entities"]["contacts"]["edited_in_target"] == {"flag: new CRM values kept": 2}

    # a delta reading the same rows again (a wide overlap) rewrites nothing that did not change
    again = run_delta(dagbag, T2, entities=["contacts"], overlap_minutes=1440)
    assert str(again.state) == "success", task_states(again)
    assert _rows(target_url, "SELECT count(*) FROM stg.extract WHERE run_id = :r AND entity = 'contacts'",
                 r=again.run_id)[0][0] >= 4
    # before: every row in the window rewritten with a pre-image, though nothing changed
    assert _rows(target_url, "SELECT count(*) FROM crm_migration.pre_image WHERE run_id = :r", r=again.run_id) == [(0,)]
    assert _rows(target_url, "SELECT rows_out FROM crm_migration.stage_timing WHERE run_id = :r AND stage = 'load'"
                             " AND entity = 'contacts'", r=again.run_id) == [(0,)]


def test_a_load_that_does_not_hold_what_was_derived_fails_its_gate(dagbag, target_url):
    _lots(dagbag, "accounts")
    with engine(target_url).begin() as conn:  # something between the load and the table rewrites values
        conn.exec_driver_sql("""CREATE FUNCTION crm.shout() RETURNS trigger LANGUAGE plpgsql AS
                                $$BEGIN NEW.last_name := upper(NEW.last_name); RETURN NEW; END$$""")
        conn.exec_driver_sql("CREATE TRIGGER shout BEFORE INSERT ON crm.people FOR EACH ROW"
                             " EXECUTE FUNCTION crm.shout()")
    dr = run_dag(dagbag, "crm_lot_contacts")
    states = task_states(dr)
    assert states["load_contacts"] == "success" and states["gate_load_contacts"] == "failed", states
    mismatched = _rows(target_url, "SELECT value, detail FROM crm_migration.gate_result WHERE run_id = :r"
                                   " AND entity = 'contacts' AND check_name = 'reconciliation by id: content_mismatch'",
                       r=dr.run_id)
    shouted = _rows(target_url, "SELECT count(*) FROM crm.people WHERE last_name ~ '[a-z]'")[0][0]
    assert shouted == 0 and mismatched[0][0] > 0  # before: green, every row "accounted for"
    assert "last_name" in str(mismatched[0][1])


def test_a_future_dated_row_never_outranks_a_later_real_edit(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_skew")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    ids = _single_customers(target_url, 3)
    with engine(legacy).begin() as conn:  # a client whose clock is 6 hours ahead (under the 1-day placeholder limit)
        conn.execute(sa.text(f"UPDATE contacts SET title = 'skew-1', date_modified = {NOW} + interval '6 hours'"
                             " WHERE id = ANY(:i)"), {"i": ids})
    engine(legacy).dispose()
    first = run_delta(dagbag, T1, entities=["contacts"])
    assert str(first.state) == "success", task_states(first)
    with engine(legacy).begin() as conn:  # then real edits, at the legacy clock
        conn.execute(sa.text(f"UPDATE contacts SET title = 'real-edit', date_modified = {NOW} WHERE id = ANY(:i)"),
                     {"i": ids})
    engine(legacy).dispose()
    second = run_delta(dagbag, T2, entities=["contacts"])
    assert str(second.state) == "success", task_states(second)
    titles = dict(_rows(target_url, "SELECT legacy_id, job_title FROM crm.people WHERE legacy_id = ANY(:i)", i=ids))
    assert titles == dict.fromkeys(ids, "real-edit")  # before: 3 of 3 real edits dropped (target kept 'skew-1')


def test_a_quarantine_retry_of_a_run_that_does_not_exist_fails_at_once(dagbag, target_url):
    migrated_target(dagbag, "accounts", "contacts")
    before = _rows(target_url, "SELECT count(*), coalesce(md5(string_agg(c::text, '|' ORDER BY c.id)), '')"
                               " FROM crm.companies c")
    dr = run_dag(dagbag, "crm_lot_accounts", {"only_quarantined": True, "quarantine_run_id": "manual__2026-01-01"},
              when=LATER)
    states = task_states(dr)
    assert states["prepare"] == "failed" and states["extract_accounts"] != "success", states
    with pytest.raises(ValueError, match="quarantine_run_id 'manual__2026-01-01' names no run of lot accounts"):
        quarantined_ids(target_url, "accounts", "accounts", dr.run_id, "manual__2026-01-01")
    assert _rows(target_url, "SELECT count(*), coalesce(md5(string_agg(c::text, '|' ORDER BY c.id)), '')"
                             " FROM crm.companies c") == before  # before: read 0 rows and ended green


def test_data_owners_reach_go_with_corrections_and_waivers_without_touching_the_legacy_crm(
        dagbag, target_url, monkeypatch, tmp_path):
    uri, legacy = legacy_copy("crm_test_legacy_go")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "users", "accounts", "contacts")
    legacy_before = _rows(legacy, "SELECT md5(string_agg(c::text, '|' ORDER BY c.id)) FROM contacts c")
    nogo = run_delta(dagbag, T1, entities=["accounts", "contacts"], freeze=True)
    assert task_states(nogo)["freeze_check"] == "failed"
    verdict = _rows(target_url, "SELECT report FROM crm_migration.run_report WHERE lot_id = 'freeze' AND run_id = :r",
                    r=nogo.run_id)[0][0]
    assert verdict["verdict"] == "NO-GO" and verdict["causes"]["contacts"]["quarantined"] > 0
    first = verdict["first_ids"]["contacts"]["quarantined"]
    assert first and all("*" not in i for i in first)  # opaque ids in clear: a data owner looks them up
    assert verdict["headline"].startswith("NO-GO -- ") and first[0] in verdict["headline"]

    # the quarantine as CSV for the data owners: ids in clear, personal values masked, every defect
    report = _rows(target_url, "SELECT report FROM crm_migration.run_report WHERE lot_id = 'contacts'")[0][0]
    qdir = report["quarantine_files"]["directory"]
    with open(f"{qdir}/contacts.dedupe_EMAIL_INVALID.csv", encoding="utf-8") as f:  # merged into no twin
        bad = list(csv.DictReader(f))
    assert bad and all(r["legacy_id"] and "*" not in r["legacy_id"] for r in bad)
    assert all("@" not in (r["email"] or "") or "***" in r["email"] for r in bad)

    corrections, waivers = tmp_path / "corrections.csv", tmp_path / "waivers.csv"
    with corrections.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["entity", "legacy_id", "field", "value", "reason", "who"])
        for i, r in enumerate(bad):
            w.writerow(["contacts", r["legacy_id"], "email", f"fixed{i}@example.com", "typo", "steward"])
        # duplicates with a broken e-mail merged into a complete twin (issue 39), corrected all the same: each is
        # read again with its customer's other members, not alone (alone it took the record over: stale)
        mended = [r[0] for r in _rows(target_url, "SELECT legacy_id FROM stg.merge_map WHERE lot_id = 'contacts'"
                                                  " AND rule LIKE '%filled by the survivor: EMAIL_INVALID%'")]
        assert mended
        for i, lid in enumerate(mended):
            w.writerow(["contacts", lid, "email", f"mended{i}@example.com", "typo", "steward"])
    with waivers.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["entity", "legacy_id", "reason_code", "reason", "approver"])
        for entity in ("accounts", "contacts"):
            for code in ("dedupe:REQUIRED_MISSING", "transform:FK_ORPHAN", "transform:UNMAPPED_VALUE",
                         "transform:SURVIVOR_QUARANTINED", "cleanse:COUNTRY_UNKNOWN", "cleanse:DATE_INVALID",
                         "cleanse:DATE_OUT_OF_RANGE"):
                w.writerow([entity, "", code, "accepted as not migrated", "head of sales ops"])
    monkeypatch.setenv("CRM_CORRECTIONS_FILE", str(corrections))
    monkeypatch.setenv("CRM_WAIVERS_FILE", str(waivers))
    go = run_delta(dagbag, T2, entities=["accounts", "contacts"], freeze=True)
    # before: only editing the legacy database reached a green freeze
    assert str(go.state) == "success", task_states(go)
    verdict = _rows(target_url, "SELECT report FROM crm_migration.run_report WHERE lot_id = 'freeze' AND run_id = :r",
                    r=go.run_id)[0][0]
    assert verdict["verdict"] == "GO" and verdict["waivers"]["contacts"]
    # counted by SQL: every corrected contact is in the target with its corrected e-mail (or merged into one)
    ids = [r["legacy_id"] for r in bad]
    got = dict(_rows(target_url, "SELECT legacy_id, email FROM crm.people WHERE legacy_id = ANY(:i)", i=ids))
    merged = {r[0] for r in _rows(target_url, "SELECT legacy_id FROM crm_migration.merged WHERE entity = 'contacts'"
                                              " AND legacy_id = ANY(:i)", i=ids)}
    ledger = {r[0] for r in _rows(target_url, "SELECT legacy_id FROM crm_migration.legacy_ledger WHERE entity ="
                                              " 'contacts' AND legacy_id = ANY(:i)", i=ids)}  # excluded, waived
    assert set(ids) == set(got) | merged | ledger and len(ledger) < len(ids) / 2
    assert all(v.startswith("fixed") and v.endswith("@example.com") for v in got.values()) and len(got) > 0
    assert _rows(legacy, "SELECT md5(string_agg(c::text, '|' ORDER BY c.id)) FROM contacts c") == legacy_before
    applied = _rows(target_url, "SELECT count(*) FROM crm_migration.correction_applied WHERE run_id = :r", r=go.run_id)
    assert applied[0][0] >= len(got)


def test_rollbacks_in_any_allowed_order_leave_no_gap(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_gap")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    ids = _single_customers(target_url, 4)

    def edit(rows: list[str], title: str, at: str = NOW) -> None:
        with engine(legacy).begin() as conn:
            conn.execute(sa.text(f"UPDATE contacts SET title = :t, date_modified = {at} WHERE id = ANY(:i)"),
                         {"t": title, "i": rows})
        engine(legacy).dispose()

    # committed late, dated just inside the first delta's window (watermark minus the 1-minute minimum
    # overlap) and before the second's: only the first delta reads them
    mark = _rows(target_url, "SELECT modified_at FROM crm_migration.watermark WHERE entity = 'contacts'")[0][0]
    edit(ids[:2], "first delta", f"'{(mark.astimezone(UTC).replace(tzinfo=None)).isoformat()}'::timestamp"
                                 " - interval '59 seconds'")
    first = run_delta(dagbag, T1, entities=["contacts"], overlap_minutes=0)
    edit(ids[2:], "second delta")
    second = run_delta(dagbag, T2, entities=["contacts"], overlap_minutes=0)
    assert str(first.state) == str(second.state) == "success"
    for dr in (first, second):  # oldest first: each allowed (disjoint rows)
        rb = dagbag.get_dag("crm_rollback").test(logical_date=dr.logical_date, run_after=dr.logical_date, run_conf={
            "lot_id": "delta", "run_id": dr.run_id, "dry_run": False, "cascade": False})
        assert str(rb.state) == "success", task_states(rb)
    assert {r[0] for r in _rows(target_url, "SELECT job_title FROM crm.people WHERE legacy_id = ANY(:i)", i=ids)
            } & {"first delta", "second delta"} == set()
    again = run_delta(dagbag, datetime(2026, 11, 22, 4, 0, tzinfo=UTC), entities=["contacts"], overlap_minutes=0)
    assert str(again.state) == "success", task_states(again)
    titles = dict(_rows(target_url, "SELECT legacy_id, job_title FROM crm.people WHERE legacy_id = ANY(:i)", i=ids))
    # before: the watermark came back to the second delta's start and the first delta's 2 edits were never re-read
    assert titles == {**dict.fromkeys(ids[:2], "first delta"), **dict.fromkeys(ids[2:], "second delta")}


def _duplicate_contact(legacy: str, of: str, new_id: str, email: str) -> None:
    """A second legacy contact for the same person (name, phone, company, e-mail), as CRMs accumulate."""
    with engine(legacy).begin() as conn:
        for table, key, new in (("contacts", "id", new_id), ("accounts_contacts", "contact_id", new_id)):
            conn.execute(sa.text(f"CREATE TEMP TABLE dup AS SELECT * FROM {table} WHERE {key} = :p"), {"p": of})
            conn.execute(sa.text(f"UPDATE dup SET {key} = :n"), {"n": new})
            if table == "accounts_contacts":
                conn.exec_driver_sql("UPDATE dup SET id = 'link-' || contact_id")
            conn.exec_driver_sql(f"UPDATE dup SET date_modified = {NOW}")
            conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM dup; DROP TABLE dup")
        conn.execute(sa.text("INSERT INTO email_addresses (id, email_address, deleted) VALUES (:e, :m, 0)"),
                     {"e": f"mail-{new_id}", "m": email})
        conn.execute(sa.text("INSERT INTO email_addr_bean_rel (id, email_address_id, bean_id, bean_module,"
                             " primary_address, deleted) VALUES (:r, :e, :b, 'Contacts', 1, 0)"),
                     {"r": f"rel-{new_id}", "e": f"mail-{new_id}", "b": new_id})
    engine(legacy).dispose()


def test_a_fixed_duplicate_retried_alone_joins_its_customer(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_one")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    people = _rows(legacy, "SELECT c.id, e.email_address FROM contacts c JOIN email_addr_bean_rel r ON r.bean_id = c.id"
                           " AND r.primary_address = 1 JOIN email_addresses e ON e.id = r.email_address_id"
                           " JOIN accounts_contacts a ON a.contact_id = c.id AND a.deleted = 0 WHERE c.deleted = 0"
                           " AND c.phone_work IS NOT NULL AND e.email_address LIKE '%@%.%' AND e.email_address"
                           " NOT LIKE '%@@%' AND e.email_address NOT LIKE '% %' ORDER BY c.id LIMIT 40")
    migrated_target(dagbag, "users", "accounts", "contacts")
    loaded = {r[0] for r in _rows(target_url, "SELECT legacy_id FROM crm.people WHERE deleted_at IS NULL")}
    of, email = next((i, m) for i, m in people if i in loaded)
    before = _rows(target_url, "SELECT id FROM crm.people WHERE legacy_id = :i", i=of)[0][0]
    # issue 39: a duplicate with a broken e-mail is matched before it is quarantined: it joins its customer
    _duplicate_contact(legacy, of, "dup-broken-mail", email.replace("@", "@@"))
    # a duplicate whose country no rule knows is quarantined (no twin mends that): fixed, then retried alone
    _duplicate_contact(legacy, of, "dup-of-a-customer", email)
    with engine(legacy).begin() as conn:
        country = conn.execute(sa.text("SELECT primary_address_country FROM contacts WHERE id = :i"),
                               {"i": of}).scalar()
        conn.exec_driver_sql("UPDATE contacts SET primary_address_country = 'Atlantis' WHERE id = 'dup-of-a-customer'")
    dr = run_dag(dagbag, "crm_lot_contacts", when=LATER)
    assert str(dr.state) == "success", task_states(dr)
    assert _rows(target_url, "SELECT legacy_id, reason_code FROM stg.quarantine WHERE run_id = :r AND legacy_id LIKE"
                             " 'dup-%'", r=dr.run_id) == [("dup-of-a-customer", "COUNTRY_UNKNOWN")]
    merged = _rows(target_url, "SELECT survivor_legacy_id, rule FROM stg.merge_map WHERE run_id = :r AND legacy_id ="
                               " 'dup-broken-mail'", r=dr.run_id)
    assert merged and merged[0][0] != "dup-broken-mail" and "EMAIL_INVALID" in merged[0][1]  # the defect named
    assert _rows(target_url, "SELECT new_id FROM crm_migration.crosswalk WHERE entity = 'contacts' AND legacy_id ="
                             " 'dup-broken-mail'") == [(before,)]
    with engine(legacy).begin() as conn:  # fixed in the legacy CRM, then only the quarantine is retried
        conn.execute(sa.text("UPDATE contacts SET primary_address_country = :c WHERE id = 'dup-of-a-customer'"),
                     {"c": country})
    engine(legacy).dispose()
    retry = run_dag(dagbag, "crm_lot_contacts", {"only_quarantined": True},
                    when=datetime(2026, 11, 21, 4, 0, tzinfo=UTC))
    assert str(retry.state) == "success", task_states(retry)
    active = _rows(target_url, "SELECT count(*) FROM crm.people WHERE lower(email) = lower(:m) AND deleted_at IS NULL",
                   m=email)
    assert active == [(1,)]  # before: 2 active records of one customer
    # one record: the duplicate and the customer map to the target row the customer had (whichever holds it)
    ids = dict(_rows(target_url, "SELECT legacy_id, new_id FROM crm_migration.crosswalk WHERE entity = 'contacts'"
                                 " AND legacy_id IN (:a, 'dup-of-a-customer')", a=of))
    assert len(ids) == 2 and len(set(ids.values())) == 1 and str(ids[of]) == str(before)


def test_edit_policies_per_column_keep_or_overwrite_and_record(dagbag, target_url, monkeypatch):

    from crm_migration.model.config import load_lots

    uri, legacy = legacy_copy("crm_test_legacy_policy")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    lots = {lot.lot_id: lot for lot in load_lots()}
    migrated_target(dagbag, "accounts", "contacts")
    ids = _single_customers(target_url, 3)
    with engine(target_url).begin() as conn:  # edited in the new CRM
        conn.execute(sa.text("UPDATE crm.people SET job_title = 'new CRM job', city = 'New CRM City'"
                             " WHERE legacy_id = ANY(:i)"), {"i": ids})
    with engine(legacy).begin() as conn:  # and in the legacy CRM
        conn.execute(sa.text(f"UPDATE contacts SET title = 'legacy job', primary_address_city = 'Legacy City',"
                             f" date_modified = {NOW} WHERE id = ANY(:i)"), {"i": ids})
    engine(legacy).dispose()
    cfg = lots["contacts"].entities["contacts"].model_copy(update={
        "on_target_edit": "target_wins", "on_target_edit_columns": {"job_title": "legacy_wins"}})
    lot = lots["contacts"].model_copy(update={"entities": {"contacts": cfg}})
    run_pipeline(legacy, target_url, "policy_2", lots=[lot])
    got = _rows(target_url, "SELECT DISTINCT job_title, city FROM crm.people WHERE legacy_id = ANY(:i)", i=ids)
    assert got == [("legacy job", "New CRM City")]
    conflicts = _rows(target_url, "SELECT edited, kept, policy FROM crm_migration.edit_conflict"
                                  " WHERE run_id = 'policy_2'")
    assert len(conflicts) == 3 and all(set(e) == {"city", "job_title"} and k == ["city"] and p == "target_wins"
                                       for e, k, p in conflicts)
    with engine(target_url).connect() as conn:  # both settled by the policy: no drift left for the freeze
        assert verify_target(target_url, "contacts").counts["drifted"] == 0
