"""Issue 8: every way a row was lost or reverted, reproduced through the real DAGs (dag.test()) on
real PostgreSQL. Each test counts lost rows by SQL against the legacy and the target databases,
never by reading the product's own report back."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import datetime, UTC
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from conftest import ROOT, legacy_copy, mariadb_up, migrated_target, resolve_quarantined, unaccounted
from helpers import LOTS, report_of, run_dag, run_delta, run_pipeline, T1, T2, T3, task_states

from crm_migration.stages import load, relations, run as stages
from crm_migration.model.config import load_lots
from crm_migration.model.db import engine

LATER = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
NOW = "now() AT TIME ZONE 'UTC'"


def _lots(dagbag, *lots: str) -> dict:
    runs = {}
    for lot in lots or ("accounts", "contacts"):
        dr = run_dag(dagbag, f"crm_lot_{lot}")
        assert str(dr.state) == "success", task_states(dr)
        runs[lot] = dr
    return runs


def _loaded_people(url: str, n: int, where: str = "TRUE") -> list[str]:
    with engine(url).connect() as conn:
        return [r[0] for r in conn.exec_driver_sql(
            f"SELECT legacy_id FROM crm.people WHERE deleted_at IS NULL AND {where} ORDER BY legacy_id LIMIT {n}")]


def _values(url: str, sql: str, ids: list[str]) -> dict:
    with engine(url).connect() as conn:
        return dict(conn.execute(sa.text(sql), {"ids": ids}).all())


def _edit_titles(legacy: str, ids: list[str], prefix: str, modified: str = NOW) -> dict[str, str]:
    with engine(legacy).begin() as conn:
        for i, lid in enumerate(ids):
            conn.execute(sa.text(f"UPDATE contacts SET title = :t, date_modified = {modified} WHERE id = :i"),
                         {"t": f"{prefix} {i}", "i": lid})
    engine(legacy).dispose()
    return {lid: f"{prefix} {i}" for i, lid in enumerate(ids)}


def _lost_titles(url: str, expected: dict[str, str]) -> list[str]:
    """Legacy edits (expected title per legacy id) that the target does not hold."""
    got = _values(url, "SELECT legacy_id, job_title FROM crm.people WHERE legacy_id = ANY(:ids)", list(expected))
    return sorted(lid for lid, title in expected.items() if got.get(lid) != title)


def _freeze_counts(url: str, run_id: str) -> dict:
    with engine(url).connect() as conn:
        rep = conn.execute(sa.text("SELECT report FROM crm_migration.run_report WHERE lot_id = 'freeze'"
                                   " AND run_id = :r"), {"r": run_id}).scalar_one()
    return rep["entities"]


def test_future_dated_rows_never_move_the_watermark(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_future")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    ids = _loaded_people(target_url, 22)
    placeholder, skewed, edited = ids[0], ids[1], ids[2:]
    with engine(legacy).begin() as conn:
        conn.execute(sa.text("UPDATE contacts SET title = 'placeholder', date_modified = '9999-12-31' WHERE id = :i"),
                     {"i": placeholder})
        conn.execute(sa.text(f"UPDATE contacts SET title = 'skewed', date_modified = {NOW} + interval '2 hours'"
                             " WHERE id = :i"), {"i": skewed})
    first = run_delta(dagbag, T1, entities=["contacts"])
    assert str(first.state) == "success", task_states(first)
    with engine(legacy).connect() as conn:
        legacy_now = conn.exec_driver_sql(f"SELECT {NOW}").scalar_one().replace(tzinfo=UTC)
    with engine(target_url).connect() as conn:
        wm = conn.exec_driver_sql("SELECT max(modified_at) FROM crm_migration.watermark WHERE entity = 'contacts'"
                                  ).scalar_one()
        reason = conn.execute(sa.text("SELECT reason_code FROM stg.quarantine WHERE legacy_id = :i AND run_id = :r"),
                              {"i": placeholder, "r": first.run_id}).scalar_one()
    assert wm <= legacy_now  # never past the legacy clock, whatever the rows say
    assert reason == "DATE_OUT_OF_RANGE"
    assert report_of(target_url, "delta", first.run_id)["entities"]["contacts"]["clock_skewed"] >= 1

    expected = _edit_titles(legacy, edited, "after the skew")
    second = run_delta(dagbag, T2, entities=["contacts"])
    assert str(second.state) == "success", task_states(second)
    assert _lost_titles(target_url, expected) == []  # before: 20 of 20 edits lost
    assert _lost_titles(target_url, {skewed: "skewed"}) == []  # the skewed row itself is taken


def test_row_at_the_watermark_and_late_commit(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_edge")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    ids = _loaded_people(target_url, 10)
    with engine(target_url).connect() as conn:
        wm = conn.exec_driver_sql("SELECT modified_at FROM crm_migration.watermark WHERE entity = 'contacts'"
                                  ).scalar_one()
    wm_text = wm.astimezone(UTC).replace(tzinfo=None).isoformat()
    at_wm = _edit_titles(legacy, ids[:5], "at the watermark", f"'{wm_text}'")
    # committed now but dated half an hour before the watermark: a long transaction
    late = _edit_titles(legacy, ids[5:], "late commit", f"'{wm_text}'::timestamp - interval '30 minutes'")
    first = run_delta(dagbag, T1, entities=["contacts"], overlap_minutes=0)
    assert str(first.state) == "success", task_states(first)
    assert _lost_titles(target_url, at_wm) == []  # inclusive window, minimum overlap enforced

    resolve_quarantined(legacy, target_url, entities=("contacts",))
    frozen = run_delta(dagbag, T2, entities=["contacts"], overlap_minutes=0, freeze=True)
    assert task_states(frozen)["freeze_check"] == "failed"  # before: freeze passed with 5 rows stale
    counts = _freeze_counts(target_url, frozen.run_id)["contacts"]["counts"]
    assert counts["stale"] == len(late) == len(_lost_titles(target_url, late))

    fixed = run_delta(dagbag, T3, entities=["contacts"], overlap_minutes=120, freeze=True)  # read back further
    assert str(fixed.state) == "success", task_states(fixed)
    assert _lost_titles(target_url, {**at_wm, **late}) == []


@pytest.fixture()
def phased_config(tmp_path, monkeypatch, airflow_db):
    """Contacts in two phases by source_filter: lot contacts_a (ids below '8') and contacts_b."""
    cfg = tmp_path / "config"
    (cfg / "lots").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "migration.yaml", cfg)
    for lot in ("00_users.yaml", "01_accounts.yaml"):
        shutil.copy(ROOT / "config" / "lots" / lot, cfg / "lots")
    contacts = yaml.safe_load((ROOT / "config" / "lots" / "02_contacts.yaml").read_text())
    for name, lot_id, pred in (("02", "contacts_a", "c.id < '8'"), ("03", "contacts_b", "c.id >= '8'")):
        lot = {**contacts, "lot_id": lot_id, "description": f"contacts, phase {lot_id[-1]}"}
        lot["entities"]["contacts"] = {**contacts["entities"]["contacts"], "source_filter": pred}
        (cfg / "lots" / f"{name}_{lot_id}.yaml").write_text(yaml.safe_dump(lot))
    monkeypatch.setenv("CRM_CONFIG_DIR", str(cfg))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


def test_phased_lots_each_keep_their_watermark(phased_config, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_phased")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    bag = phased_config
    _lots(bag, "accounts", "contacts_a")
    phase_a = _loaded_people(target_url, 10)
    time.sleep(1)
    with engine(legacy).connect() as conn:  # phase B not migrated yet: edits on both sides of the split
        phase_b = [r[0] for r in conn.exec_driver_sql(
            "SELECT id FROM contacts WHERE id >= '8' AND deleted = 0 AND last_name <> '' ORDER BY id LIMIT 10")]
    expected = _edit_titles(legacy, phase_a + phase_b, "between the phases")
    _lots(bag, "contacts_b")
    with engine(target_url).connect() as conn:
        scopes = {r[0] for r in conn.exec_driver_sql("SELECT scope FROM crm_migration.watermark"
                                                     " WHERE entity = 'contacts'")}
        # one customer, whatever the phase: no active person of phase B repeats one of phase A (same e-mail
        # and name); issue 14: phase B deduplicated only its own rows (7 second records of 338 customers)
        twins = conn.exec_driver_sql(
            "SELECT count(*) FROM crm.people a JOIN crm.people b ON lower(a.email) = lower(b.email)"
            " AND a.last_name = b.last_name AND a.first_name IS NOT DISTINCT FROM b.first_name"
            " WHERE a.legacy_id < '8' AND b.legacy_id >= '8' AND a.deleted_at IS NULL AND b.deleted_at IS NULL"
            ).scalar_one()
    assert scopes == {"contacts_a", "contacts_b"}
    assert twins == 0
    dr = bag.get_dag("crm_delta_sync").test(logical_date=T1, run_after=T1, run_conf={
        "entities": ["contacts"], "freeze": False, "dry_run": False, "overlap_minutes": 5,
        "delete_mode": "soft", "detect_hard_deletes": True})
    assert str(dr.state) == "success", task_states(dr)
    in_target = _values(target_url, "SELECT legacy_id, 1 FROM crm.people WHERE legacy_id = ANY(:ids)", list(expected))
    assert _lost_titles(target_url, {k: v for k, v in expected.items() if k in in_target}) == []  # before: 10 lost
    assert len(in_target) >= 15  # most phase-B rows loaded (a few may be duplicates or quarantined)


def test_lot_load_after_a_delta_never_reverts_it(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_race")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    lot = {x.lot_id: x for x in load_lots()}["contacts"]
    for stage in (stages.run_extract,):  # a slow lot rerun staged its rows before the edits...
        stage(legacy, target_url, lot, "contacts", "slow_lot")
    for stage in (stages.run_cleanse, stages.run_dedupe, stages.run_transform):
        stage(target_url, lot, "contacts", "slow_lot")
    ids = _loaded_people(target_url, 10)
    time.sleep(1)
    expected = _edit_titles(legacy, ids, "newer")
    dr = run_delta(dagbag, T1, entities=["contacts"])  # ...the delta syncs the edits...
    assert str(dr.state) == "success", task_states(dr)
    assert _lost_titles(target_url, expected) == []
    out = load.run_load(target_url, lot, "contacts", "slow_lot")  # ...then the lot's load lands
    assert _lost_titles(target_url, expected) == []  # before: all 10 reverted to the older version
    assert out["rejected_older"] == len(ids)


def test_lot_and_delta_loads_of_one_entity_never_interleave(legacy_url, target_url):

    run_pipeline(legacy_url, target_url, "lock_run", lots=[LOTS["accounts"]], loaded=set())
    import zlib

    key = engine(target_url).connect()
    holder_key = zlib.crc32(b"crm-cutover:load:accounts")
    key.exec_driver_sql(f"SELECT pg_advisory_lock({holder_key})")  # another load of accounts is running
    key.commit()
    done = threading.Event()
    loader = threading.Thread(target=lambda: (load.run_load(target_url, LOTS["accounts"], "accounts", "lock_run"),
                                              done.set()))
    loader.start()
    try:
        time.sleep(2)
        assert not done.is_set()  # it waits for the lock instead of writing
        with engine(target_url).connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM crm.companies").scalar_one() == 0
    finally:
        key.exec_driver_sql(f"SELECT pg_advisory_unlock({holder_key})")
        key.commit()
        key.close()
    loader.join(timeout=60)
    assert done.is_set()
    with engine(target_url).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM crm.companies").scalar_one() > 0


def test_rows_merged_into_a_quarantined_survivor_are_quarantined_with_it(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_survivor")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    runs = migrated_target(dagbag, "accounts", "contacts")
    with engine(target_url).connect() as conn:
        pairs = conn.execute(sa.text(
            "SELECT m.survivor_legacy_id, array_agg(m.legacy_id) FROM stg.merge_map m"
            " WHERE m.entity = 'contacts' AND m.run_id = :r AND m.legacy_id <> m.survivor_legacy_id"
            " GROUP BY 1 ORDER BY 1 LIMIT 3"), {"r": runs["contacts"].run_id}).all()
    assert pairs
    with engine(legacy).begin() as conn:  # the survivors get a lead source nobody mapped
        for survivor, _ in pairs:
            conn.execute(sa.text(f"UPDATE contacts SET lead_source = 'Carrier Pigeon', date_modified = {NOW}"
                                 " WHERE id = :i"), {"i": survivor})
    rerun = run_dag(dagbag, "crm_lot_contacts", when=LATER)
    assert str(rerun.state) == "success", task_states(rerun)
    members = sorted(m for _, ms in pairs for m in ms)
    with engine(target_url).connect() as conn:
        reasons = dict(conn.execute(sa.text(
            "SELECT legacy_id, reason_code FROM stg.quarantine WHERE run_id = :r AND legacy_id = ANY(:ids)"),
            {"r": rerun.run_id, "ids": members}).all())
    assert set(reasons) == set(members) and set(reasons.values()) == {"SURVIVOR_QUARANTINED"}
    assert unaccounted(legacy, target_url, "contacts", "contacts", rerun.run_id) == []  # before: 24 in make demo


def test_changes_in_joined_tables_are_sent(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_joined")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    _lots(dagbag, "accounts", "contacts", "opportunities")
    with engine(legacy).connect() as conn:  # people whose own row has a primary e-mail (not gap-filled by a merge)
        own = {r[0] for r in conn.exec_driver_sql(
            "SELECT r.bean_id FROM email_addr_bean_rel r JOIN email_addresses e ON e.id = r.email_address_id"
            " WHERE r.primary_address = 1 AND r.deleted = 0 AND e.deleted = 0 GROUP BY 1"
            " HAVING count(*) = 1 AND count(DISTINCT e.id) = 1"
            " AND NOT EXISTS (SELECT 1 FROM email_addr_bean_rel r2 WHERE r2.email_address_id = min(e.id)"
            "                 AND r2.bean_id <> r.bean_id)")}
    people = [p for p in _loaded_people(target_url, 400, "email IS NOT NULL") if p in own][:20]
    assert len(people) == 20
    new_emails = {lid: f"moved.{i}@example.org" for i, lid in enumerate(people)}
    with engine(legacy).begin() as conn:  # a new address: only the e-mail tables change
        for lid, email in new_emails.items():
            conn.execute(sa.text(
                f"UPDATE email_addresses e SET email_address = :m, date_modified = {NOW} FROM email_addr_bean_rel r"
                " WHERE r.email_address_id = e.id AND r.bean_id = :i AND r.primary_address = 1 AND r.deleted = 0"),
                {"m": email, "i": lid})
        opps = [r[0] for r in conn.exec_driver_sql(
            "SELECT opportunity_id FROM opportunities_contacts WHERE deleted = 0 GROUP BY 1 HAVING count(*) = 1"
            " ORDER BY 1")]
    with engine(target_url).connect() as conn:
        opps = [r[0] for r in conn.execute(sa.text(
            "SELECT legacy_id FROM crm.opportunities WHERE legacy_id = ANY(:ids) ORDER BY 1 LIMIT 5"), {"ids": opps})]
    new_contact = _loaded_people(target_url, 1)[0]
    with engine(legacy).begin() as conn:  # the link table has no modification date at all
        conn.execute(sa.text("UPDATE opportunities_contacts SET contact_id = :c WHERE opportunity_id = ANY(:o)"),
                     {"c": new_contact, "o": opps})
    engine(legacy).dispose()
    assert len(opps) == 5
    dr = run_delta(dagbag, T1, entities=["accounts", "contacts", "opportunities"])
    assert str(dr.state) == "success", task_states(dr)
    got = _values(target_url, "SELECT legacy_id, email FROM crm.people WHERE legacy_id = ANY(:ids)", people)
    assert sorted(lid for lid, m in new_emails.items() if got.get(lid) != m) == []  # before: 0 of 20 sent
    with engine(target_url).connect() as conn:
        linked = conn.execute(sa.text(
            "SELECT count(*) FROM crm.opportunities o JOIN crm.people p ON p.id = o.person_id"
            " WHERE o.legacy_id = ANY(:o) AND p.legacy_id = :c"), {"o": opps, "c": new_contact}).scalar_one()
    assert linked == len(opps)  # before: 0 of 5


def test_row_quarantined_by_a_delta_fails_the_freeze(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_stale")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    resolve_quarantined(legacy, target_url)
    first = run_delta(dagbag, T1)
    assert str(first.state) == "success", task_states(first)
    broken = _loaded_people(target_url, 3, "email IS NOT NULL")
    with engine(legacy).begin() as conn:  # an edit the rules reject: the target keeps the old version
        conn.execute(sa.text(
            f"UPDATE email_addresses e SET email_address = 'jane  doe@@broken', date_modified = {NOW}"
            " FROM email_addr_bean_rel r WHERE r.email_address_id = e.id AND r.bean_id = ANY(:ids)"
            " AND r.primary_address = 1"), {"ids": broken})
    engine(legacy).dispose()
    frozen = run_delta(dagbag, T2, freeze=True)
    assert task_states(frozen)["freeze_check"] == "failed" and str(frozen.state) == "failed"  # before: passed
    assert _freeze_counts(target_url, frozen.run_id)["contacts"]["counts"]["quarantined"] == len(broken)


def test_bad_source_values_are_quarantined_and_the_lot_goes_on(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_badvalues")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    with engine(legacy).begin() as conn:
        ids = [r[0] for r in conn.exec_driver_sql(
            "SELECT id FROM contacts WHERE deleted = 0 ORDER BY id LIMIT 3")]
        conn.execute(sa.text("UPDATE contacts SET date_modified = 'infinity' WHERE id = :i"), {"i": ids[0]})
        conn.execute(sa.text("UPDATE contacts SET date_modified = '9999-12-31' WHERE id = :i"), {"i": ids[1]})
        conn.exec_driver_sql("ALTER TABLE contacts DROP CONSTRAINT contacts_pkey")
        conn.execute(sa.text("INSERT INTO contacts SELECT * FROM contacts WHERE id = :i"), {"i": ids[2]})
        conn.exec_driver_sql("INSERT INTO accounts (id, name, date_modified, deleted) VALUES"
                             f" ('lead-space', 'Lead Space SA', {NOW}, 0)")
        conn.exec_driver_sql("INSERT INTO contacts (id, last_name, date_modified, deleted) VALUES"
                             f" ('opaque-fk', 'Opaque', {NOW}, 0)")
        conn.exec_driver_sql("INSERT INTO accounts_contacts (id, contact_id, account_id, date_modified) VALUES"
                             f" ('opaque-link', 'opaque-fk', ' lead-space', {NOW})")
    engine(legacy).dispose()
    runs = _lots(dagbag)
    run_id = runs["contacts"].run_id
    with engine(target_url).connect() as conn:
        reasons = conn.execute(sa.text(
            "SELECT legacy_id, reason_code FROM stg.quarantine WHERE run_id = :r AND legacy_id = ANY(:ids)"
            " ORDER BY 1, 2"), {"r": run_id, "ids": [*ids, "opaque-fk"]}).all()
        wm = conn.exec_driver_sql("SELECT modified_at FROM crm_migration.watermark WHERE entity = 'contacts'"
                                  ).scalar_one()
    assert sorted(reasons) == sorted([(ids[0], "DATE_INVALID"), (ids[1], "DATE_OUT_OF_RANGE"),
                                      (ids[2], "DUPLICATE_KEY"), (ids[2], "DUPLICATE_KEY"),
                                      ("opaque-fk", "FK_ORPHAN")])  # ' lead-space' is not 'lead-space'
    assert wm.year == datetime.now(UTC).year
    assert unaccounted(legacy, target_url, "contacts", "contacts", run_id) == []


@pytest.mark.skipif(not mariadb_up(), reason="MariaDB is not running on 127.0.0.1:3306")
def test_mysql_source_with_zero_dates_and_nul_bytes(target_url):
    from crm_migration.checks.quality import gate_load

    admin = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/mysql", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS crm_test_legacy_mysql")
        conn.exec_driver_sql("CREATE DATABASE crm_test_legacy_mysql CHARACTER SET utf8mb4")
    admin.dispose()
    legacy = "mysql+pymysql://root@127.0.0.1:3306/crm_test_legacy_mysql?charset=utf8mb4"
    ddl = "\n".join(ln for ln in (Path(ROOT) / "include" / "sql" / "ddl" / "create_legacy.sql").read_text().splitlines()
                    if not ln.strip().startswith("--"))
    with engine(legacy).begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = ''")  # what old MySQL CRMs ran with: zero dates allowed
        for stmt in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(stmt)
        conn.exec_driver_sql("INSERT INTO accounts (id, name, billing_address_country, date_modified, deleted)"
                             " VALUES ('acc-1', 'Acme SA', 'France', UTC_TIMESTAMP(), 0)")
        conn.exec_driver_sql(
            "INSERT INTO contacts (id, first_name, last_name, date_entered, date_modified, deleted) VALUES"
            " ('c-ok', 'Ada', 'Lovelace', UTC_TIMESTAMP(), UTC_TIMESTAMP(), 0),"
            " ('c-zero', 'Zed', 'Zero', '0000-00-00 00:00:00', '0000-00-00 00:00:00', 0),"
            " ('c-nul', 'Nul', CONCAT('Byte', CHAR(0), 'Name'), UTC_TIMESTAMP(), UTC_TIMESTAMP(), 0)")
        conn.exec_driver_sql("INSERT INTO accounts_contacts (id, contact_id, account_id) VALUES"
                             " ('l-ok', 'c-ok', 'acc-1'), ('l-zero', 'c-zero', 'acc-1'), ('l-nul', 'c-nul', 'acc-1')")
    lots = {x.lot_id: x for x in load_lots()}
    for lot_id, entity in (("accounts", "accounts"), ("contacts", "contacts")):
        lot = lots[lot_id]
        stages.run_extract(legacy, target_url, lot, entity, "mysql_run")
        stages.run_cleanse(target_url, lot, entity, "mysql_run")
        stages.run_dedupe(target_url, lot, entity, "mysql_run")
        stages.run_transform(target_url, lot, entity, "mysql_run")
        load.run_load(target_url, lot, entity, "mysql_run", advance_watermark=True)
        relations.sync(target_url, legacy, lot_id, "mysql_run", entity)  # the load stage's second half
        assert gate_load(target_url, legacy, lot, entity, "mysql_run")["ok"]
    with engine(target_url).connect() as conn:
        reasons = dict(conn.exec_driver_sql(
            "SELECT legacy_id, reason_code FROM stg.quarantine WHERE run_id = 'mysql_run'").all())
        loaded = {r[0] for r in conn.exec_driver_sql("SELECT legacy_id FROM crm.people")}
    assert reasons == {"c-zero": "DATE_INVALID", "c-nul": "NUL_BYTE"}
    assert loaded == {"c-ok"}
    assert unaccounted(legacy, target_url, "contacts", "contacts", "mysql_run") == []
    engine(legacy).dispose()
