"""Stage functions on real PostgreSQL: slices rewritten in place, hostile strings survive."""

from __future__ import annotations

import sqlalchemy as sa
from conftest import LEGACY_URL, table_checksum

from crm_migration import stages
from crm_migration.config import load_lots
from crm_migration.db import engine
from crm_migration.demo_legacy import build_legacy

LOTS = {lot.lot_id: lot for lot in load_lots()}
HOSTILE_URL = LEGACY_URL.rsplit("/", 1)[0] + "/crm_test_legacy_hostile"
HOSTILE = ["O'Brien", 'Robert"); DROP TABLE crm.people;--', "x" * 5000, "😀🎉 émoji", "\u202eRTL\u202c עברית",
           "tab\there", "\\N", "%(lot_id)s", "${var.LOT_ID}", "Ã©lodie"]


def _count(url: str, sql: str, **p) -> int:
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql), p).scalar_one()


def _pipeline(legacy: str, url: str, run_id: str) -> None:
    for lot in LOTS.values():
        for entity in lot.entities:
            stages.run_extract(legacy, url, lot, entity, run_id)
            stages.run_cleanse(url, lot, entity, run_id)
            stages.run_dedupe(url, lot, entity, run_id)
            stages.run_transform(url, lot, entity, run_id)
            stages.run_load(url, lot, entity, run_id)


def test_each_stage_rewrites_only_its_slice(legacy_url, target_url):
    lot = LOTS["accounts"]
    stages.run_extract(legacy_url, target_url, lot, "accounts", "run_a")
    stages.run_extract(legacy_url, target_url, lot, "accounts", "run_b", sample_fraction=0.5)
    n_a = _count(target_url, "SELECT count(*) FROM stg.raw WHERE run_id = 'run_a'")
    n_b = _count(target_url, "SELECT count(*) FROM stg.raw WHERE run_id = 'run_b'")
    stages.run_extract(legacy_url, target_url, lot, "accounts", "run_a")  # rerun: same slice, same rows
    assert _count(target_url, "SELECT count(*) FROM stg.raw WHERE run_id = 'run_a'") == n_a
    assert _count(target_url, "SELECT count(*) FROM stg.raw WHERE run_id = 'run_b'") == n_b
    assert 0 < n_b < n_a
    for _ in range(2):
        out = stages.run_cleanse(target_url, lot, "accounts", "run_a")
    assert _count(target_url, "SELECT count(*) FROM stg.accounts_clean WHERE run_id = 'run_a'") == out["clean"]
    assert out["clean"] + out["excluded"] + out["quarantined"] == n_a


def test_hostile_strings_reach_target_unchanged_or_quarantine(target_url):
    build_legacy(HOSTILE_URL, contacts=40, seed=3)
    with engine(HOSTILE_URL).begin() as conn:
        for col in ("first_name", "last_name", "title", "phone_work"):  # a legacy export with no length limits
            conn.exec_driver_sql(f"ALTER TABLE contacts ALTER COLUMN {col} TYPE text")
        acc = conn.exec_driver_sql("SELECT id FROM accounts WHERE deleted = 0 AND name <> '' ORDER BY id LIMIT 1"
                                   ).scalar_one()
        for i, value in enumerate(HOSTILE):
            conn.execute(sa.text(
                "INSERT INTO contacts (id, first_name, last_name, title, phone_work, primary_address_country,"
                " account_id, date_modified, deleted) VALUES (:id, :v, :v, :v, :v, 'FR', :acc, '2026-01-01', 0)"),
                {"id": f"hostile-{i:02d}", "v": value, "acc": acc})
    _pipeline(HOSTILE_URL, target_url, "hostile_run")
    with engine(target_url).connect() as conn:
        loaded = dict(conn.exec_driver_sql(
            "SELECT legacy_id, job_title FROM crm.people WHERE legacy_id LIKE 'hostile-%%'").all())
        quarantined = {r[0] for r in conn.exec_driver_sql(
            "SELECT legacy_id FROM stg.quarantine WHERE legacy_id LIKE 'hostile-%%'")}
        merged = {r[0] for r in conn.exec_driver_sql(
            "SELECT legacy_id FROM stg.merge_map WHERE legacy_id LIKE 'hostile-%%' AND legacy_id <> survivor_legacy_id")}
    for i in range(len(HOSTILE)):
        lid = f"hostile-{i:02d}"
        assert lid in loaded or lid in quarantined or lid in merged, lid
    assert loaded["hostile-00"] == "O'Brien"
    assert loaded["hostile-01"] == 'Robert"); DROP TABLE crm.people;--'
    assert loaded["hostile-02"] == "x" * 5000
    assert loaded["hostile-03"] == "😀🎉 émoji"
    assert loaded["hostile-07"] == "%(lot_id)s" and loaded["hostile-08"] == "${var.LOT_ID}"
    assert loaded["hostile-09"] == "élodie"  # mojibake repaired
    assert table_checksum(target_url, "crm.people")[0] > 0
