"""Checksums by key range (stages/checksums): computed by the legacy database (PostgreSQL and MariaDB) and by the
target, equal where the target accounts for every row's version; the freeze reading only the ranges that differ
gives the same fates as reading every row; hard deletes read only the ranges whose ids changed."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from conftest import legacy_copy, mariadb_up
from crm_demo.demo_legacy import build_legacy
from crm_migration.checks.reconcile import freeze_compare
from crm_migration.model.config import entity_scopes, load_lots
from crm_migration.model.db import engine
from crm_migration.ops.delta import delta_lot
from crm_migration.source.legacy import bucket_of
from crm_migration.source.sources import open_keys, open_rows
from crm_migration.stages import checksums
from helpers import run_pipeline

MARIA = "mysql+pymysql://root@127.0.0.1:3306/crm_test_legacy_checksums?charset=utf8mb4"


def _ranges(legacy: str, url: str) -> tuple[set[str] | None, int]:
    windows = {s: (f, datetime.min) for s, f in entity_scopes("contacts").items()}
    with engine(url).begin() as conn:
        return checksums.ranges_to_read(conn, legacy, delta_lot(["contacts"]), "contacts", windows, freeze=True)


def _freeze_both_ways(legacy: str, url: str, monkeypatch) -> dict:
    """The freeze's fates by key range and by reading every row: they must be the same."""
    by_range = freeze_compare(url, legacy, delta_lot(["contacts"]), "contacts")
    with monkeypatch.context() as m:
        m.setattr(checksums, "FULL_READ_SHARE", -1.0)  # every range "too many": every row read
        whole = freeze_compare(url, legacy, delta_lot(["contacts"]), "contacts")
    assert by_range.counts == whole.counts and by_range.failures == whole.failures
    assert by_range.in_scope == whole.in_scope
    return by_range.counts


def _legacy(kind: str) -> str:
    if kind == "postgresql":
        return legacy_copy("crm_test_legacy_checksums")[1]
    if not mariadb_up():
        pytest.skip("MariaDB is not running on 127.0.0.1:3306")
    build_legacy(MARIA, contacts=300, seed=11)
    return MARIA


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_freeze_reads_only_the_ranges_that_changed(kind, target_url, monkeypatch):
    legacy = _legacy(kind)
    lots = {lot.lot_id: lot for lot in load_lots()}
    run_pipeline(legacy, target_url, "ck_1", lots=[lots["users"], lots["accounts"], lots["contacts"]])
    read, same = _ranges(legacy, target_url)
    with engine(legacy).connect() as conn:
        in_legacy = conn.exec_driver_sql("SELECT count(*) FROM contacts").scalar_one()
    assert read == set() and same == in_legacy  # the extract's hash is the checksum's: every range equal
    before = _freeze_both_ways(legacy, target_url, monkeypatch)

    with engine(legacy).begin() as conn:  # one row edited, one deleted, one added, outside the migration
        a, b = [r[0] for r in conn.exec_driver_sql(
            "SELECT c.id FROM contacts c WHERE c.deleted = 0 AND NOT EXISTS (SELECT 1 FROM contacts d"
            " WHERE d.id <> c.id AND d.last_name = c.last_name) ORDER BY c.id LIMIT 2")]
        conn.execute(sa.text("UPDATE contacts SET title = 'Edited after the load' WHERE id = :a"), {"a": a})
        conn.execute(sa.text("DELETE FROM contacts WHERE id = :b"), {"b": b})
    engine(legacy).dispose()
    read, _ = _ranges(legacy, target_url)
    assert read == {bucket_of(a), bucket_of(b)}
    after = _freeze_both_ways(legacy, target_url, monkeypatch)
    assert after["stale"] == before["stale"] + 1  # the edited row, found in its range
    assert sum(after.get(k, 0) for k in ("loaded", "merged")) < sum(before.get(k, 0) for k in ("loaded", "merged"))


def test_hard_deletes_read_only_the_ranges_whose_ids_changed(target_url):
    legacy = legacy_copy("crm_test_legacy_checksums")[1]
    first = checksums.presence(target_url, legacy, "contacts")
    with engine(legacy).connect() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM contacts ORDER BY id")]
    assert first.checked is None and first.ids == set(map(str, ids))  # nothing kept yet: every id read
    with engine(target_url).begin() as conn:
        checksums.keep_id_sums(conn, "contacts", first.sums)
    assert checksums.presence(target_url, legacy, "contacts").checked == set()  # nothing changed: nothing read

    gone, loaded = str(ids[3]), str(ids[-1])
    with engine(legacy).begin() as conn:
        conn.execute(sa.text("DELETE FROM contacts WHERE id = :g"), {"g": gone})
    engine(legacy).dispose()
    now = checksums.presence(target_url, legacy, "contacts", also={loaded})
    assert now.checked == {bucket_of(gone), bucket_of(loaded)}
    assert gone not in now and loaded in now and str(ids[0]) in now
    assert len(now.ids) < len(ids) / 100  # only those ranges' ids were read
    with engine(target_url).begin() as conn:  # a lot's load (or a rollback) forgets them: every id read again
        checksums.forget_id_sums(conn, "contacts")
    assert checksums.presence(target_url, legacy, "contacts").checked is None


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_whole_read_and_a_read_by_ids_hash_each_row_alike(kind, legacy_url):
    """Whole scopes join their link tables' choices, a read of a few rows looks each one up (legacy.with_links):
    the same values, so the same hash -- the delta compares one with the other."""
    legacy = legacy_url if kind == "postgresql" else _legacy(kind)
    lots = {lot.lot_id: lot for lot in load_lots()}
    for lot_id, entity in (("contacts", "contacts"), ("opportunities", "opportunities")):
        lot = lots[lot_id]
        with open_keys(legacy, lot, entity) as (_, keys):
            whole = {lid: h for lid, h, _ in keys}
        some = sorted(whole)[::7][:300]
        with open_rows(legacy, lot, entity, ids=some) as (_, rows):
            by_ids = {lid: h for lid, h, _, _ in rows}
        assert by_ids and by_ids == {i: whole[i] for i in some}, entity
