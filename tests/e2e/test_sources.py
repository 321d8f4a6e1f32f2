"""Issue 10: the same lots and the same cutover from a MySQL/MariaDB legacy CRM (SuiteCRM's own
database), through the real DAGs, counted by SQL against the legacy and the target databases."""

from __future__ import annotations

from datetime import UTC

import pytest
import sqlalchemy as sa
from conftest import mariadb_up, resolve_quarantined, unaccounted
from helpers import report_of, run_dag, run_delta, T1, T3, target_of, task_states

from crm_migration.model.db import engine

MARIA = "mysql+pymysql://root@127.0.0.1:3306/crm_test_legacy_maria?charset=utf8mb4"
SIX = ("users", "accounts", "contacts", "opportunities", "leads", "activities")
ACTIVITY_TABLES = ("calls", "meetings", "notes", "tasks")


@pytest.mark.skipif(not mariadb_up(), reason="MariaDB is not running on 127.0.0.1:3306")
def test_lots_and_cutover_from_mariadb(dagbag, target_url, monkeypatch):
    from crm_demo.demo_legacy import build_legacy

    counts = build_legacy(MARIA, contacts=400, seed=7)
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", "mysql://root@127.0.0.1:3306/crm_test_legacy_maria?charset=utf8mb4")
    for lot in SIX:
        dr = run_dag(dagbag, f"crm_lot_{lot}")
        assert str(dr.state) == "success", task_states(dr)
        assert unaccounted(MARIA, target_url, lot, lot, dr.run_id) == []
        assert report_of(target_url, lot, dr.run_id)["identity_ok"]
    with engine(target_url).connect() as conn:
        people = conn.exec_driver_sql("SELECT count(*) FROM crm.people").scalar_one()
        linked = dict(conn.exec_driver_sql(  # companies read through SuiteCRM's link tables
            "SELECT 'people', count(company_id) FROM crm.people UNION ALL"
            " SELECT 'opportunities', count(company_id) FROM crm.opportunities UNION ALL"
            " SELECT 'leads', count(contact_id) FROM crm.leads UNION ALL"
            " SELECT 'activities', count(parent_id) FROM crm.activities").all())
    with engine(MARIA).connect() as conn:
        activities = conn.exec_driver_sql("SELECT (SELECT count(*) FROM calls) + (SELECT count(*) FROM meetings)"
                                          " + (SELECT count(*) FROM notes) + (SELECT count(*) FROM tasks)"
                                          ).scalar_one()
    assert 0 < people <= counts["contacts"] and activities == sum(counts[t] for t in ACTIVITY_TABLES)
    assert all(n > 0 for n in linked.values()), linked

    with engine(MARIA).begin() as conn:  # the legacy CRM moves on: its own clock, its own date arithmetic
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM contacts WHERE deleted = 0 ORDER BY id LIMIT 10")]
        conn.execute(sa.text("UPDATE contacts SET title = 'From MariaDB', date_modified = UTC_TIMESTAMP()"
                             " WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids})
    engine(MARIA).dispose()
    dr = run_delta(dagbag, T1)
    assert str(dr.state) == "success", task_states(dr)
    with engine(target_url).connect() as conn:
        titles = dict(conn.execute(sa.text(
            "SELECT x.legacy_id, p.job_title FROM crm.people p JOIN crm_migration.crosswalk x"
            " ON x.entity = 'contacts' AND x.new_id = p.id WHERE x.legacy_id = ANY(:ids)"), {"ids": ids}).all())
    assert len(titles) >= 5 and set(titles.values()) == {"From MariaDB"}  # each edit reached its customer
    assert report_of(target_url, "delta", dr.run_id)["identity_ok"]
    resolve_quarantined(MARIA, target_url, entities=SIX)
    frozen = run_delta(dagbag, T3, freeze=True, entities=list(SIX))
    assert str(frozen.state) == "success", task_states(frozen)  # legacy and target agree, by key and hash
    engine(MARIA).dispose()


def _csv_ids(directory, name: str) -> set[str]:
    import csv

    with (directory / f"{name}.csv").open(encoding="utf-8", newline="") as f:
        return {r["Id"] for r in csv.DictReader(f)}


def _accounted(url: str, entity: str, table: str, ids: set[str]) -> set[str]:
    """Ids that are a target row, merged into one, or quarantined / excluded (by any run): by SQL."""
    with engine(url).connect() as conn:
        return {r[0] for r in conn.execute(sa.text(
            f"SELECT legacy_id FROM {table} WHERE legacy_id = ANY(:ids)"
            " UNION SELECT m.legacy_id FROM crm_migration.merged m JOIN " + table + " t ON t.id = m.new_id"
            " WHERE m.entity = :e AND m.legacy_id = ANY(:ids)"
            " UNION SELECT legacy_id FROM stg.quarantine WHERE entity = :e AND legacy_id = ANY(:ids)"
            " UNION SELECT legacy_id FROM stg.excluded WHERE entity = :e AND legacy_id = ANY(:ids)"),
            {"ids": sorted(ids), "e": entity})}


def test_lots_and_cutover_from_a_salesforce_csv_export(tmp_path, target_url, monkeypatch, airflow_db):
    import csv
    import os
    import time

    from airflow.dag_processing.dagbag import DagBag
    from conftest import ROOT

    from crm_demo import demo_export

    export = tmp_path / "export"
    demo_export.write(export, demo_export.rows(contacts=300, seed=7))
    monkeypatch.setenv("CRM_CONFIG_DIR", str(ROOT / "config" / "examples" / "salesforce_csv"))
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", f"file://{export}")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    tables = {"users": ("User", "crm.owners"), "accounts": ("Account", "crm.companies"),
              "contacts": ("Contact", "crm.people"), "opportunities": ("Opportunity", "crm.opportunities"),
              "leads": ("Lead", "crm.leads"), "activities": ("Task", "crm.activities")}
    for lot, (name, table) in tables.items():
        dr = run_dag(bag, f"crm_lot_{lot}")
        assert str(dr.state) == "success", task_states(dr)
        ids = _csv_ids(export, name)
        assert _accounted(target_url, lot, table, ids) == ids  # every exported row accounted for, by id
        assert report_of(target_url, lot, dr.run_id)["identity_ok"]
    # the link objects: every live AccountContactRelation and OpportunityContactRole row, with its role
    people, companies = target_of(target_url, "people", "contacts"), target_of(target_url, "companies", "accounts")
    deals = target_of(target_url, "opportunities", "opportunities")
    for name, key, value, pair, key_of, value_of in (
            ("AccountContactRelation", "ContactId", "AccountId", "person_id, company_id FROM crm.company_people",
             people, companies),
            ("OpportunityContactRole", "OpportunityId", "ContactId",
             "opportunity_id, person_id FROM crm.opportunity_people", deals, people)):
        with (export / f"{name}.csv").open(encoding="utf-8", newline="") as f:
            live = [r for r in csv.DictReader(f) if r["IsDeleted"] != "true"]
        want = {(key_of[r[key]], value_of[r[value]]) for r in live if r[key] in key_of and r[value] in value_of}
        with engine(target_url).connect() as conn:
            have = {(str(k), str(v)) for k, v in conn.exec_driver_sql(f"SELECT {pair}")}
        assert want and have == want, (name, len(want - have), len(have - want))

    # a newer export: 10 titles changed, one contact gone from the export (a hard delete)
    path = export / "Contact.csv"
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header, items = reader.fieldnames, list(reader)
    with engine(target_url).connect() as conn:
        loaded = [r[0] for r in conn.exec_driver_sql("SELECT legacy_id FROM crm.people WHERE deleted_at IS NULL"
                                                     " AND NOT EXISTS (SELECT 1 FROM crm_migration.merged m"
                                                     " WHERE m.new_id = people.id) ORDER BY 1 LIMIT 11")]
    edited, gone = set(loaded[:10]), loaded[10]
    for r in items:
        if r["Id"] in edited:
            r["Title"], r["LastModifiedDate"] = "From the newer export", "2026-11-21T00:00:00.000Z"
    items = [r for r in items if r["Id"] != gone]
    time.sleep(1.1)  # the newer export is newer
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(items)
    os.utime(path)
    dr = run_delta(bag, T1)
    assert str(dr.state) == "success", task_states(dr)
    with engine(target_url).connect() as conn:
        titles = dict(conn.execute(sa.text("SELECT legacy_id, job_title FROM crm.people WHERE legacy_id = ANY(:i)"),
                                   {"i": sorted(edited)}).all())
        deleted = conn.execute(sa.text("SELECT deleted_at IS NOT NULL FROM crm.people WHERE legacy_id = :i"),
                               {"i": gone}).scalar_one()
    assert titles == dict.fromkeys(edited, "From the newer export") and deleted
    assert report_of(target_url, "delta", dr.run_id)["identity_ok"]
    # the data owner deals with what is still quarantined (deleted in the newest export), then the freeze
    with engine(target_url).connect() as conn:
        quarantined = {r[0] for r in conn.exec_driver_sql(
            "SELECT legacy_id FROM crm_migration.legacy_ledger WHERE fate = 'quarantined'")}
    time.sleep(1.1)
    for name, _ in tables.values():
        path = export / f"{name}.csv"
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            header, items = reader.fieldnames, list(reader)
        for r in items:
            if r["Id"] in quarantined:
                r["IsDeleted"] = "true"
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(items)
    frozen = run_delta(bag, T3, freeze=True, entities=list(tables))
    assert str(frozen.state) == "success", task_states(frozen)  # export and target agree, by key and hash


def test_an_excel_export_reads_as_its_csv(tmp_path, monkeypatch):
    """The same export as CSV and as XLSX (typed cells: dates as dates, flags as booleans, as Excel saves
    them) gives the same clean rows, exclusions and quarantine."""
    import csv
    import shutil
    from datetime import datetime

    import openpyxl
    from conftest import ROOT

    from crm_demo import demo_export
    from crm_migration.rules.cleanse import cleanse_rows
    from crm_migration.model.config import load_lots
    from crm_migration.source.sources import open_rows

    export = tmp_path / "export"
    demo_export.write(export, demo_export.rows(contacts=200, seed=7))
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Accounts"
    with (export / "Account.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        sheet.append(header)
        for rec in reader:
            sheet.append([datetime.fromisoformat(v.replace("Z", "")) if h.endswith("Date") and v else
                          (v == "true") if h == "IsDeleted" else (v or None) for h, v in zip(header, rec, strict=True)])
    book.save(export / "Account.xlsx")
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "config" / "examples" / "salesforce_csv", conf)
    monkeypatch.setenv("CRM_CONFIG_DIR", str(conf))
    lot = {x.lot_id: x for x in load_lots()}["accounts"]
    entity_file = conf / "entities" / "01_accounts.yaml"
    csv_spec = entity_file.read_text()
    now = datetime(2026, 11, 23, tzinfo=UTC)

    def outcome() -> tuple:
        with open_rows(f"file://{export}", lot, "accounts") as (_, rows):
            res = cleanse_rows("accounts", [r for *_, r in rows], lot.entities["accounts"], now)
        return (sorted(res.clean, key=lambda r: r["legacy_id"]), sorted(x[:2] for x in res.excluded),
                sorted(q[:2] for q in res.quarantined))

    from_csv = outcome()
    entity_file.write_text(csv_spec.replace("path: Account.csv", "path: Account.xlsx\n  format: xlsx\n"
                                                                 "  sheet: Accounts"))
    from crm_migration.model.spec import spec

    assert spec("accounts").file.format == "xlsx"
    from_xlsx = outcome()
    assert len(from_csv[0]) > 0 and from_xlsx == from_csv
