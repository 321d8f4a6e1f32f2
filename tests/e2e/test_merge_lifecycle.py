"""Issue 9: merged customers keep one target record through edits, deletions and reruns, and rollbacks
never undo later runs behind the user's back. Real DAGs (dag.test()) on real PostgreSQL; every count is
SQL against the legacy and the target databases."""

from __future__ import annotations

from datetime import datetime, UTC

import sqlalchemy as sa
from conftest import legacy_copy, migrated_target, table_checksum, unaccounted
from helpers import report_of, run_dag, run_delta, T1, T2, task_states

from crm_migration.model.db import engine

LATER = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
NOW = "now() AT TIME ZONE 'UTC'"
N = 5


def _q(url: str, sql: str, **p) -> list:
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql), p).all()


def _lots(dagbag, *lots):
    runs = {}
    for lot in lots:
        dr = run_dag(dagbag, f"crm_lot_{lot}")
        assert str(dr.state) == "success", task_states(dr)
        runs[lot] = dr
    return runs


def _clusters(url: str, legacy: str, n: int = N) -> list[tuple]:
    """(target id, holder, [members]) of n merged customers whose rows are all active and recent in the
    legacy CRM (so deleting or editing one leaves the others in)."""
    rows = _q(url, "SELECT t.id, t.legacy_id, array_agg(m.legacy_id ORDER BY m.legacy_id) FROM crm.people t"
                   " JOIN crm_migration.merged m ON m.entity = 'contacts' AND m.new_id = t.id"
                   " WHERE t.deleted_at IS NULL GROUP BY 1, 2 ORDER BY 2")
    ids = [lid for _, h, ms in rows for lid in (h, *ms)]
    active = {r[0] for r in _q(legacy, "SELECT id FROM contacts WHERE deleted = 0 AND id = ANY(:ids)"
                                       " AND date_modified > now() - interval '8 years'", ids=ids)}
    picked = [r for r in rows if {r[1], *r[2]} <= active][:n]
    assert len(picked) == n, f"the demo data has only {len(picked)} fully active merged customers"
    return picked


def _active_rows_of(url: str, cluster_ids: list) -> dict:
    return dict(_q(url, "SELECT id, count(*) FILTER (WHERE deleted_at IS NULL) FROM crm.people"
                        " WHERE id = ANY(:ids) GROUP BY 1", ids=cluster_ids))


def _crosswalk_duplicates(url: str) -> int:
    return _q(url, "SELECT count(*) FROM (SELECT legacy_id FROM crm_migration.crosswalk WHERE entity = 'contacts'"
                   " GROUP BY 1 HAVING count(*) > 1) d")[0][0]


def test_survivor_deleted_in_legacy_next_member_takes_over(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_takeover")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    picked = _clusters(target_url, legacy)
    soft, hard = picked[:3], picked[3:]
    with engine(legacy).begin() as conn:  # the survivors are deleted; their duplicates stay active
        conn.execute(sa.text(f"UPDATE contacts SET deleted = 1, date_modified = {NOW} WHERE id = ANY(:ids)"),
                     {"ids": [h for _, h, _ in soft]})
        conn.execute(sa.text("DELETE FROM contacts WHERE id = ANY(:ids)"), {"ids": [h for _, h, _ in hard]})
    engine(legacy).dispose()
    dr = run_delta(dagbag, T1, entities=["contacts"])
    assert str(dr.state) == "success", task_states(dr)
    cids = [cid for cid, _, _ in picked]
    # before: 5 active people gone (the record soft-deleted with its survivor); after: each still active
    assert _active_rows_of(target_url, cids) == {cid: 1 for cid in cids}
    holders = dict(_q(target_url, "SELECT id, legacy_id FROM crm.people WHERE id = ANY(:ids)", ids=cids))
    for cid, old, members in picked:
        assert holders[cid] in members  # the next member holds the record
        xw = dict(_q(target_url, "SELECT legacy_id, new_id FROM crm_migration.crosswalk WHERE entity = 'contacts'"
                                 " AND legacy_id = ANY(:ids)", ids=[old, *members]))
        assert xw == {lid: cid for lid in (old, *members)}  # children of the old survivor keep their parent
    assert _crosswalk_duplicates(target_url) == 0
    rep = report_of(target_url, "delta", dr.run_id)
    assert rep["identity_ok"] and rep["entities"]["contacts"]["clusters"]["taken_over"] == len(picked)
    before = table_checksum(target_url, "crm.people")
    assert str(run_delta(dagbag, T1, entities=["contacts"]).state) == "success"  # the same run again
    assert table_checksum(target_url, "crm.people") == before


def test_lot_rerun_after_a_duplicate_is_edited_keeps_one_target_row(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_flip")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    people = _q(target_url, "SELECT count(*) FROM crm.people")[0][0]
    picked = _clusters(target_url, legacy)
    edited = {members[0]: f"Flipped {i}" for i, (_, _, members) in enumerate(picked)}
    with engine(legacy).begin() as conn:  # a duplicate is edited: the most recent row survives now
        for lid, title in edited.items():
            conn.execute(sa.text(f"UPDATE contacts SET title = :t, date_modified = {NOW} WHERE id = :i"),
                         {"t": title, "i": lid})
    engine(legacy).dispose()
    rerun = run_dag(dagbag, "crm_lot_contacts", when=LATER)
    assert str(rerun.state) == "success", task_states(rerun)
    # before: 343 people for 338 reported, 5 legacy ids twice in the crosswalk
    assert _q(target_url, "SELECT count(*) FROM crm.people")[0][0] == people
    assert _crosswalk_duplicates(target_url) == 0
    got = dict(_q(target_url, "SELECT id, legacy_id || ' ' || job_title FROM crm.people WHERE id = ANY(:ids)",
                  ids=[cid for cid, _, _ in picked]))
    assert got == {cid: f"{members[0]} {edited[members[0]]}" for cid, _, members in picked}  # same id, new holder
    assert unaccounted(legacy, target_url, "contacts", "contacts", rerun.run_id) == []
    rep = report_of(target_url, "contacts", rerun.run_id)
    assert rep["identity_ok"] and rep["entities"]["contacts"]["clusters"]["flipped"] >= len(picked)


def test_a_change_to_a_merged_row_reaches_the_customer(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_member_change")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    picked = _clusters(target_url, legacy)
    edited = {members[-1]: f"Member title {i}" for i, (_, _, members) in enumerate(picked)}
    with engine(legacy).begin() as conn:
        for lid, title in edited.items():
            conn.execute(sa.text(f"UPDATE contacts SET title = :t, date_modified = {NOW} WHERE id = :i"),
                         {"t": title, "i": lid})
    engine(legacy).dispose()
    dr = run_delta(dagbag, T1, entities=["contacts"])
    assert str(dr.state) == "success", task_states(dr)
    titles = dict(_q(target_url, "SELECT id, job_title FROM crm.people WHERE id = ANY(:ids) AND deleted_at IS NULL",
                     ids=[cid for cid, _, _ in picked]))
    # before: 0 of 5 changes reached the customer (the merged row stayed merged, the record unchanged)
    assert titles == {cid: edited[members[-1]] for cid, _, members in picked}
    assert _crosswalk_duplicates(target_url) == 0
    rep = report_of(target_url, "delta", dr.run_id)
    changed = rep["entities"]["contacts"]["clusters"]
    assert rep["identity_ok"] and changed["flipped"] + changed["rederived"] >= len(picked)
    before = table_checksum(target_url, "crm.people")
    assert str(run_delta(dagbag, T2, entities=["contacts"]).state) == "success"  # nothing new: nothing moves
    assert table_checksum(target_url, "crm.people") == before


def _rollback(dagbag, lot_id, run_id, when, dry_run=False, cascade=False):
    return dagbag.get_dag("crm_rollback").test(
        logical_date=when, run_after=when,
        run_conf={"lot_id": lot_id, "run_id": run_id, "dry_run": dry_run, "cascade": cascade})


def _sums(url):
    return {t: table_checksum(url, t) for t in ("crm.companies", "crm.people")}


def test_rollback_of_an_earlier_run_never_undoes_a_later_one(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_rollback_order")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    runs = _lots(dagbag, "accounts")
    accounts_only = _sums(target_url)
    runs.update(_lots(dagbag, "contacts"))
    with engine(legacy).begin() as conn:
        conn.exec_driver_sql(f"UPDATE contacts SET title = 'Run two', date_modified = {NOW}"
                             " WHERE id IN (SELECT id FROM contacts WHERE deleted = 0 ORDER BY id LIMIT 21)")
    engine(legacy).dispose()
    second = run_dag(dagbag, "crm_lot_contacts", when=LATER)
    assert str(second.state) == "success", task_states(second)
    after_second = _sums(target_url)
    first = runs["contacts"].run_id
    at = iter(datetime(2026, 11, 21, h, tzinfo=UTC) for h in range(4, 20))

    alone = _rollback(dagbag, "contacts", first, next(at))
    assert task_states(alone)["rollback"] == "failed"  # before: deleted 335 rows, 21 of them changed by run 2
    assert _sums(target_url) == after_second
    blind = _rollback(dagbag, "contacts", first, next(at), cascade=True)
    assert task_states(blind)["rollback"] == "failed"  # a cascade needs the dry run's list first
    assert _sums(target_url) == after_second
    dry = _rollback(dagbag, "contacts", first, next(at), dry_run=True)
    assert str(dry.state) == "success" and _sums(target_url) == after_second
    plan = report_of(target_url, "rollback", dry.run_id)
    assert plan["later_runs"] == [f"contacts/{second.run_id}"]
    cascade = _rollback(dagbag, "contacts", first, next(at), cascade=True)
    assert str(cascade.state) == "success", task_states(cascade)
    assert _sums(target_url) == accounts_only  # both runs undone, newest first: the target before contacts
    for run in (first, second.run_id):  # recorded: neither can be replayed
        replay = _rollback(dagbag, "contacts", run, next(at))
        assert task_states(replay)["rollback"] == "failed"
        assert _sums(target_url) == accounts_only
    assert _q(target_url, "SELECT count(*) FROM crm_migration.rollback_log WHERE lot_id = 'contacts'")[0][0] == 2


def test_rolled_back_hard_delete_gives_children_their_parent_back(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_hard_children")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    parents = [r[0] for r in _q(  # companies with people and no duplicate that would take over
        target_url, "SELECT c.legacy_id FROM crm.companies c JOIN crm.people p ON p.company_id = c.id"
                    " WHERE NOT EXISTS (SELECT 1 FROM crm_migration.merged m WHERE m.entity = 'accounts'"
                    " AND m.new_id = c.id) GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 3")]
    children = _q(target_url, "SELECT p.legacy_id, p.company_id FROM crm.people p JOIN crm.companies c"
                              " ON c.id = p.company_id WHERE c.legacy_id = ANY(:ids) ORDER BY 1", ids=parents)
    before = _sums(target_url)
    with engine(legacy).begin() as conn:
        conn.execute(sa.text("DELETE FROM accounts WHERE id = ANY(:ids)"), {"ids": parents})
    engine(legacy).dispose()
    dr = run_delta(dagbag, T1, entities=["accounts"], delete_mode="hard")
    assert str(dr.state) == "success", task_states(dr)
    orphaned = _q(target_url, "SELECT count(*) FROM crm.people WHERE legacy_id = ANY(:ids) AND company_id IS NULL",
                  ids=[c for c, _ in children])[0][0]
    assert orphaned == len(children) > 0  # the delete set their reference NULL
    dry = _rollback(dagbag, "delta", dr.run_id, datetime(2026, 11, 23, 1, tzinfo=UTC), dry_run=True)
    assert str(dry.state) == "success"
    undo = _rollback(dagbag, "delta", dr.run_id, datetime(2026, 11, 23, 2, tzinfo=UTC))
    assert str(undo.state) == "success", task_states(undo)
    # before: 9 people kept company_id NULL after the rollback; after: every reference is back
    assert _q(target_url, "SELECT legacy_id, company_id FROM crm.people WHERE legacy_id = ANY(:ids) ORDER BY 1",
              ids=[c for c, _ in children]) == children
    assert _sums(target_url) == before
