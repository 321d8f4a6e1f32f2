"""Issue 10: the migration is configuration. A new field and a new entity, added in a temporary config
directory with no Python edit, migrate end to end through the real DAGs on real PostgreSQL; counts are
SQL against the legacy and the target databases."""

from __future__ import annotations

import shutil
from datetime import datetime, UTC

import pytest
import sqlalchemy as sa
from conftest import ROOT, legacy_copy, unaccounted
from helpers import fresh_dagbag, report_of, run_dag, task_states

from crm_migration.model.db import engine

LATER = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


@pytest.fixture()
def own_config(tmp_path, monkeypatch, airflow_db):
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    monkeypatch.setenv("CRM_CONFIG_DIR", str(cfg))
    return cfg


def _q(url, sql, **p):
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql), p).all()


def test_a_new_field_is_one_line_of_configuration(own_config, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_new_field")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    bag = fresh_dagbag()
    for lot in ("accounts", "contacts"):
        assert str(run_dag(bag, f"crm_lot_{lot}").state) == "success"
    assert not _q(target_url, "SELECT 1 FROM information_schema.columns WHERE table_schema = 'crm'"
                              " AND table_name = 'people' AND column_name = 'salutation'")
    entity = own_config / "entities" / "02_contacts.yaml"  # the one edit: salutation goes to the target too
    before = entity.read_text()
    assert "  salutation: {kind: text, safe: true}\n" in before
    entity.write_text(before.replace("  salutation: {kind: text, safe: true}\n",
                                     "  salutation: {kind: text, safe: true, to: salutation}\n"))
    bag = fresh_dagbag()
    dr = run_dag(bag, "crm_lot_contacts", when=LATER)
    assert str(dr.state) == "success", task_states(dr)
    # the loaded target gained the column, and every loaded person holds the legacy value (whitespace cleaned)
    legacy_values = dict(_q(legacy, "SELECT id, nullif(btrim(regexp_replace(salutation, '\\s+', ' ', 'g')), '')"
                                    " FROM contacts"))
    got = _q(target_url, "SELECT legacy_id, salutation FROM crm.people")
    assert sum(v is not None for _, v in got) > 0
    assert [lid for lid, v in got if v != legacy_values[lid]] == []
    assert unaccounted(legacy, target_url, "contacts", "contacts", dr.run_id) == []
    assert report_of(target_url, "contacts", dr.run_id)["identity_ok"]


LEADS_SQL = """-- Legacy leads read as a new entity, prospects: the fields' columns, id, date_modified and deleted.
SELECT l.id, l.first_name, l.last_name, l.account_name, l.status, l.lead_source, l.phone_work,
       l.primary_address_country, l.converted, l.date_entered, l.date_modified, l.deleted
FROM leads l
WHERE ($source_filter) AND ($delta_filter)
ORDER BY l.id
"""
LEADS_ENTITY = """entity: prospects
extract: sql/select_prospects.sql
alias: l
legacy_table: leads
target: {table: prospects}
fields:
  first_name: {kind: name, to: first_name}
  last_name: {kind: name, to: last_name, required: true}
  company_name: {from: account_name, kind: text, to: company_name}
  status: {kind: picklist, to: status}
  lead_source: {kind: picklist, to: lead_source}
  phone: {from: phone_work, kind: phone, to: phone}
  country_code: {from: primary_address_country, kind: country, to: country}
  converted: {kind: bool, to: converted}
  created_at: {from: date_entered, kind: datetime, to: created_at}
  modified_at: {from: date_modified, kind: datetime, to: updated_at}
"""
LEADS_LOT = """lot_id: prospects
description: Legacy leads to crm.prospects
entities:
  prospects:
    obsolete: {soft_deleted: true}
"""


def test_a_new_entity_is_configuration_and_its_extract_sql(own_config, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_new_entity")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    (own_config / "sql").mkdir()
    (own_config / "sql" / "select_prospects.sql").write_text(LEADS_SQL)
    (own_config / "entities" / "09_prospects.yaml").write_text(LEADS_ENTITY)
    (own_config / "lots" / "09_prospects.yaml").write_text(LEADS_LOT)
    bag = fresh_dagbag()
    assert "crm_lot_prospects" in bag.dag_ids
    dr = run_dag(bag, "crm_lot_prospects")
    assert str(dr.state) == "success", task_states(dr)
    legacy_ids = {r[0] for r in _q(legacy, "SELECT id FROM leads")}
    active = {r[0] for r in _q(legacy, "SELECT id FROM leads WHERE deleted = 0")}
    loaded = {r[0] for r in _q(target_url, "SELECT legacy_id FROM crm.prospects")}
    fates = {r[0] for r in _q(target_url, "SELECT legacy_id FROM stg.quarantine WHERE run_id = :r"
                                          " AND entity = 'prospects' UNION SELECT legacy_id FROM stg.excluded"
                                          " WHERE run_id = :r AND entity = 'prospects'", r=dr.run_id)}
    assert legacy_ids and loaded and loaded <= active and legacy_ids == loaded | fates  # every lead accounted for
    assert _q(target_url, "SELECT count(*) FROM crm.prospects WHERE converted IS NOT NULL")[0][0] == len(loaded)
    rep = report_of(target_url, "prospects", dr.run_id)
    assert rep["identity_ok"] and rep["entities"]["prospects"]["reconciliation"]["counts"]["lost"] == 0
    # generated checks
    assert {g["stage"] for g in rep["gates"]} >= {"extract", "cleanse", "dedupe", "transform", "load"}


def test_a_target_the_team_does_not_own_is_checked_not_altered(own_config, target_url):
    from crm_migration.stages import load
    from crm_migration.model.config import load_lots
    from crm_migration.model.ddl import TargetMismatch
    from crm_migration.model.db import ensure_target_schema

    entity = own_config / "entities" / "01_accounts.yaml"
    entity.write_text(entity.read_text().replace("  table: companies\n", "  table: companies\n  manage_ddl: false\n")
                      .replace("  website: {kind: text}\n", "  website: {kind: text, to: website}\n"))
    ensure_target_schema(target_url)  # the table exists (from before), but is never altered
    with engine(target_url).begin() as conn:
        conn.exec_driver_sql("INSERT INTO stg.accounts_transform (lot_id, run_id, id, legacy_id, name)"
                             " VALUES ('accounts', 'r1', gen_random_uuid(), 'x1', 'Acme')")
    lot = {x.lot_id: x for x in load_lots()}["accounts"]
    with pytest.raises(TargetMismatch, match=r"crm.companies lacks the columns \['website'\]"):
        load.run_load(target_url, lot, "accounts", "r1")
    assert _q(target_url, "SELECT count(*) FROM crm.companies")[0][0] == 0  # nothing written


def test_the_extract_contract_is_checked_before_a_lot_runs(own_config, legacy_url, target_url, capsys):
    from crm_migration.stages import contract, run as stages
    from crm_migration.model.config import load_lots

    assert contract.main(["--sample", "50"]) == 0, capsys.readouterr().out  # the shipped extracts keep it
    out = capsys.readouterr().out
    assert "accounts/accounts: 50 rows sampled: OK" in out and "extract contract: OK" in out
    (own_config / "sql").mkdir()
    broken = (ROOT / "include" / "sql" / "extract" / "select_contacts.sql").read_text().replace(
        "c.title,", "").replace("c.date_modified,", "")
    (own_config / "sql" / "select_contacts.sql").write_text(broken)
    entity = own_config / "entities" / "02_contacts.yaml"
    entity.write_text(entity.read_text().replace("extract: select_contacts.sql", "extract: sql/select_contacts.sql"))
    assert contract.main(["--lot", "contacts"]) == 1
    assert "BROKEN" in (line := capsys.readouterr().out) and "['date_modified', 'title']" in line
    lot = {x.lot_id: x for x in load_lots()}["contacts"]
    with pytest.raises(contract.ContractError, match=r"does not return \['date_modified', 'title'\]"):
        stages.run_extract(legacy_url, target_url, lot, "contacts", "r1")
    assert _q(target_url, "SELECT count(*) FROM stg.extract")[0][0] == 0  # nothing written


USERS_NOTES_SQL = """
CREATE TABLE memos (id varchar(36) PRIMARY KEY, name varchar(255), parent_type varchar(255),
                    parent_id varchar(36), assigned_user_id varchar(36), date_entered timestamp,
                    date_modified timestamp, deleted smallint NOT NULL DEFAULT 0);
INSERT INTO users VALUES ('u-2', 'sales', 'Sam', 'Seller', 'Active', now(), now(), 0);
"""
SELECT_NOTES = """SELECT n.id, n.name, n.parent_type, n.parent_id, n.assigned_user_id, n.date_entered,
       n.date_modified, n.deleted
FROM memos n WHERE ($source_filter) AND ($delta_filter) ORDER BY n.id
"""
ACTIVITIES_ENTITY = """entity: activities
extract: sql/select_notes.sql
alias: n
legacy_table: memos
target: {table: memos}
fields:
  subject: {from: name, kind: text, to: subject, required: true}
  parent_legacy_id: {from: parent_id, kind: reference, type_from: parent_type, to: parent_id, type_to: parent_type,
                     entities: {Accounts: accounts, Contacts: contacts}}
  owner_legacy_id: {from: assigned_user_id, kind: reference, entity: users, to: owner_id, default: "1"}
  created_at: {from: date_entered, kind: datetime, to: created_at}
  modified_at: {from: date_modified, kind: datetime, to: updated_at}
"""


def test_activities_on_any_parent_with_a_default_owner(own_config, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_activities")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    with engine(legacy).begin() as conn:
        for stmt in filter(str.strip, USERS_NOTES_SQL.split(";")):
            conn.exec_driver_sql(stmt)
        acc = [r[0] for r in conn.exec_driver_sql("SELECT id FROM accounts WHERE deleted = 0 ORDER BY id LIMIT 2")]
        con = [r[0] for r in conn.exec_driver_sql(
            "SELECT id FROM contacts WHERE deleted = 0 AND last_name IS NOT NULL ORDER BY id LIMIT 2")]
        notes = [("n-1", "Call back", "Accounts", acc[0], "u-2"), ("n-2", "Sent quote", "Contacts", con[0], None),
                 ("n-3", "Lunch", "Contacts", con[1], "gone-user"), ("n-4", "Odd", "Bugs", "b-1", "u-2")]
        for n in notes:
            conn.execute(sa.text("INSERT INTO memos VALUES (:i, :s, :t, :p, :u, now(), now(), 0)"),
                         dict(zip(("i", "s", "t", "p", "u"), n, strict=True)))
    engine(legacy).dispose()
    sql = own_config / "sql"
    sql.mkdir()
    (sql / "select_notes.sql").write_text(SELECT_NOTES)
    (own_config / "entities" / "05_activities.yaml").write_text(ACTIVITIES_ENTITY)
    (own_config / "lots" / "05_activities.yaml").write_text(
        "lot_id: activities\ndescription: notes\ndepends_on: [users, accounts, contacts]\n"
        "entities: {activities: {}}\n")
    bag = fresh_dagbag()
    for lot in ("users", "accounts", "contacts", "activities"):
        dr = run_dag(bag, f"crm_lot_{lot}")
        assert str(dr.state) == "success", (lot, task_states(dr))
    got = {r[0]: r[1:] for r in _q(target_url, """
        SELECT a.legacy_id, a.parent_type, coalesce(c.legacy_id, p.legacy_id), o.legacy_id
        FROM crm.memos a LEFT JOIN crm.companies c ON c.id = a.parent_id
        LEFT JOIN crm.people p ON p.id = a.parent_id LEFT JOIN crm.owners o ON o.id = a.owner_id""")}
    assert got == {"n-1": ("accounts", acc[0], "u-2"), "n-2": ("contacts", con[0], "1"),
                   "n-3": ("contacts", con[1], "1")}  # parents by type; unknown owners: the default
    assert _q(target_url, "SELECT reason_code FROM stg.quarantine WHERE entity = 'activities'") == [("FK_ORPHAN",)]
    rep = report_of(target_url, "activities", dr.run_id)
    assert rep["identity_ok"] and rep["entities"]["activities"]["defaulted_references"] == {"owner_legacy_id": 2}


def test_the_target_schema_is_configuration(own_config, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_schema")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    cfg = own_config / "migration.yaml"
    cfg.write_text(cfg.read_text().replace("target_schema: crm ", "target_schema: new_crm "))
    with engine(target_url).begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS new_crm CASCADE")
    bag = fresh_dagbag()
    for lot in ("accounts", "contacts"):
        dr = run_dag(bag, f"crm_lot_{lot}")
        assert str(dr.state) == "success", task_states(dr)
        assert report_of(target_url, lot, dr.run_id)["identity_ok"]  # its gates read new_crm too
    assert _q(target_url, "SELECT count(*) FROM new_crm.people")[0][0] > 0
    assert _q(target_url, "SELECT count(*) FROM crm.people")[0][0] == 0
    with engine(target_url).begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA new_crm CASCADE")
