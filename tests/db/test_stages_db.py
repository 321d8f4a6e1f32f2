"""Stage functions on real PostgreSQL: slices rewritten in place, hostile strings survive."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest import LEGACY_URL, table_checksum
from helpers import LOTS, run_pipeline

from crm_migration.stages import run as stages
from crm_migration.model.db import engine
from crm_demo.demo_legacy import build_legacy

HOSTILE_URL = LEGACY_URL.rsplit("/", 1)[0] + "/crm_test_legacy_hostile"
HOSTILE = ["O'Brien", 'Robert"); DROP TABLE crm.people;--', "x" * 5000, "😀🎉 émoji", "\u202eRTL\u202c עברית",
           "tab\there", "\\N", "%(lot_id)s", "${var.LOT_ID}", "Ã©lodie"]


def _count(url: str, sql: str, **p) -> int:
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql), p).scalar_one()


def test_each_stage_rewrites_only_its_slice(legacy_url, target_url):
    lot = LOTS["accounts"]
    stages.run_extract(legacy_url, target_url, lot, "accounts", "run_a")
    stages.run_extract(legacy_url, target_url, lot, "accounts", "run_b", sample_fraction=0.5)
    n_a = _count(target_url, "SELECT count(*) FROM stg.extract WHERE run_id = 'run_a'")
    n_b = _count(target_url, "SELECT count(*) FROM stg.extract WHERE run_id = 'run_b'")
    stages.run_extract(legacy_url, target_url, lot, "accounts", "run_a")  # rerun: same slice, same rows
    assert _count(target_url, "SELECT count(*) FROM stg.extract WHERE run_id = 'run_a'") == n_a
    assert _count(target_url, "SELECT count(*) FROM stg.extract WHERE run_id = 'run_b'") == n_b
    assert 0 < n_b < n_a
    for _ in range(2):
        out = stages.run_cleanse(target_url, lot, "accounts", "run_a")
    assert _count(target_url, "SELECT count(*) FROM stg.accounts_cleanse WHERE run_id = 'run_a'") == out["clean"]
    assert out["clean"] + out["excluded"] + out["quarantined"] == n_a


def _slice_sum(url: str, table: str, run_id: str) -> tuple:
    with engine(url).connect() as conn:
        return tuple(conn.execute(sa.text(
            f"SELECT count(*), coalesce(md5(string_agg((to_jsonb(t) - 'run_id')::text, '|' ORDER BY"
            f" (to_jsonb(t) - 'run_id')::text)), '') FROM (SELECT * FROM {table}) t WHERE run_id = :r"),
            {"r": run_id}).one())


def test_cleanse_on_worker_processes_writes_what_one_process_writes(legacy_url, target_url, monkeypatch, caplog):
    """The cleanse's batches spread over two spawned processes (more than one batch: BATCH_ROWS made small)
    write the same clean rows, exclusions and quarantines as the task's own process, row for row."""
    from crm_migration.model import slices

    lot = LOTS["contacts"]
    tables = ("stg.contacts_cleanse", "stg.excluded", "stg.quarantine WHERE stage = 'cleanse'")
    for run in ("procs_1", "procs_2"):
        stages.run_extract(legacy_url, target_url, lot, "contacts", run)
    monkeypatch.setattr(slices, "BATCH_ROWS", 97)  # many batches, each cut on a legacy id
    monkeypatch.setenv("CRM_PROCESSES", "1")
    stages.run_cleanse(target_url, lot, "contacts", "procs_1")
    monkeypatch.setenv("CRM_PROCESSES", "2")
    with caplog.at_level("INFO"):
        out = stages.run_cleanse(target_url, lot, "contacts", "procs_2")
    assert out["clean"] > 3 * 97 and "cleanse_rows: batches on 2 worker processes" in caplog.text
    assert [_slice_sum(target_url, t, "procs_2") for t in tables] == [_slice_sum(target_url, t, "procs_1")
                                                                       for t in tables]
    assert _count(target_url, "SELECT count(*) FROM stg.extract WHERE run_id = 'procs_2'") == sum(  # none lost
        _count(target_url, f"SELECT count(*) FROM (SELECT * FROM {t}) t WHERE run_id = 'procs_2'") for t in tables)


def test_relation_values_cleaned_on_worker_processes_as_here(monkeypatch):
    """A relation read whole (more than a batch) has its e-mails and phones cleaned on worker processes:
    the same values, in the same order, as in this process."""
    from crm_migration.model import slices
    from crm_migration.model.spec import spec
    from crm_migration.stages import relations

    rows = [(f"c{i:04d}", value, i % 3 == 0, ()) for i, value in enumerate(
        [" Jean.Dupont@Example.FR ", "not an address", '"Ana" <ana@example.org>', "x@y"] * 60)]
    phones = [(f"c{i:04d}", value, False, cols) for i, (value, cols) in enumerate(
        [("01 23 45 67 89", ("France",)), ("0044 20 7946 0958", ("UK",)), ("n/a", (None,))] * 60)]
    monkeypatch.setattr(slices, "BATCH_ROWS", 50)
    out = {}
    for processes in ("1", "2"):
        monkeypatch.setenv("CRM_PROCESSES", processes)
        out[processes] = [list(relations.cleaned("contacts", spec("contacts").relations[name], iter(given)))
                          for name, given in (("emails", rows), ("phones", phones))]
    assert out["2"] == out["1"] and len(out["1"][0]) == len(rows) and out["1"][0][0][1] == "jean.dupont@example.fr"


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
                " date_modified, deleted) VALUES (:id, :v, :v, :v, :v, 'FR', '2026-01-01', 0)"),
                {"id": f"hostile-{i:02d}", "v": value})
            conn.execute(sa.text("INSERT INTO accounts_contacts (id, contact_id, account_id) VALUES (:l, :id, :acc)"),
                         {"l": f"link-{i:02d}", "id": f"hostile-{i:02d}", "acc": acc})
    run_pipeline(HOSTILE_URL, target_url, "hostile_run")
    with engine(target_url).connect() as conn:
        loaded = dict(conn.exec_driver_sql(
            "SELECT legacy_id, job_title FROM crm.people WHERE legacy_id LIKE 'hostile-%%'").all())
        quarantined = {r[0] for r in conn.exec_driver_sql(
            "SELECT legacy_id FROM stg.quarantine WHERE legacy_id LIKE 'hostile-%%'")}
        merged = {r[0] for r in conn.exec_driver_sql(
            "SELECT legacy_id FROM stg.merge_map WHERE legacy_id LIKE 'hostile-%%'"
            " AND legacy_id <> survivor_legacy_id")}
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


RULE_ROWS = [
    # id, first, last, email, phone, country, lead_source, account (None = a real one), deleted, modified
    ("rule-email", "Ann", "Bad", "ann.bad@@example.com", None, "FR", "Web Site", None, 0, "2026-01-01"),
    ("rule-country", "Bob", "Nowhere", None, None, "Atlantis", "Web Site", None, 0, "2026-01-01"),
    ("rule-required", "Cy", None, None, None, "FR", "Web Site", None, 0, "2026-01-01"),
    ("rule-picklist", "Di", "Pigeon", None, None, "FR", "Carrier Pigeon", None, 0, "2026-01-01"),
    ("rule-orphan", "Ed", "Orphan", None, None, "FR", "Web Site", "no-such-account", 0, "2026-01-01"),
    ("rule-deleted", "Fay", "Gone", None, None, "FR", "Web Site", None, 1, "2026-01-01"),
    ("rule-stale", "Gus", "Old", None, None, "FR", "Web Site", None, 0, "2001-01-01"),
    ("rule-fixed", "Ã‰lodie", "  DURAND ", " Elodie.Durand@Example.FR ", "01 56 13 38 90", "france ", "Web Site",
     None, 0, "2026-01-01"),
]
EXPECTED = {
    "rule-email": ("quarantine", "EMAIL_INVALID"), "rule-country": ("quarantine", "COUNTRY_UNKNOWN"),
    "rule-required": ("quarantine", "REQUIRED_MISSING"), "rule-picklist": ("quarantine", "UNMAPPED_VALUE"),
    "rule-orphan": ("quarantine", "FK_ORPHAN"), "rule-deleted": ("excluded", "soft_deleted"),
    "rule-stale": ("excluded", "not_modified_for_10_years"),
}


def test_each_rule_on_real_postgres(target_url):
    build_legacy(HOSTILE_URL, contacts=40, seed=4)
    with engine(HOSTILE_URL).begin() as conn:
        acc = conn.exec_driver_sql("SELECT id FROM accounts WHERE deleted = 0 AND name <> '' AND"
                                   " date_modified > '2020-01-01' ORDER BY id LIMIT 1").scalar_one()
        for rid, first, last, email, phone, country, source, account, deleted, modified in RULE_ROWS:
            conn.execute(sa.text(
                "INSERT INTO contacts (id, first_name, last_name, phone_work, primary_address_country, lead_source,"
                " deleted, date_modified) VALUES (:id, :f, :l, :p, :c, :s, :d, :m)"),
                {"id": rid, "f": first, "l": last, "p": phone, "c": country, "s": source, "d": deleted, "m": modified})
            conn.execute(sa.text("INSERT INTO accounts_contacts (id, contact_id, account_id) VALUES (:l, :id, :a)"),
                         {"l": f"link-{rid}", "id": rid, "a": account or acc})
            if email:
                conn.execute(sa.text("INSERT INTO email_addresses (id, email_address) VALUES (:e, :a)"),
                             {"e": f"e-{rid}", "a": email})
                conn.execute(sa.text("INSERT INTO email_addr_bean_rel (id, email_address_id, bean_id, bean_module,"
                                     " primary_address) VALUES (:r, :e, :b, 'Contacts', 1)"),
                             {"r": f"r-{rid}", "e": f"e-{rid}", "b": rid})
    run_pipeline(HOSTILE_URL, target_url, "rules_run")
    with engine(target_url).connect() as conn:
        where = {r[0]: ("quarantine", r[1]) for r in conn.exec_driver_sql(
            "SELECT legacy_id, reason_code FROM stg.quarantine WHERE legacy_id LIKE 'rule-%%'")}
        where.update({r[0]: ("excluded", r[1]) for r in conn.exec_driver_sql(
            "SELECT legacy_id, rule FROM stg.excluded WHERE legacy_id LIKE 'rule-%%'")})
        fixed = conn.exec_driver_sql("SELECT first_name, last_name, email, phone, country FROM crm.people"
                                     " WHERE legacy_id = 'rule-fixed'").one()
        detail = conn.exec_driver_sql("SELECT detail FROM stg.quarantine WHERE legacy_id = 'rule-picklist'").scalar()
        orphan = conn.exec_driver_sql("SELECT detail FROM stg.quarantine WHERE legacy_id = 'rule-orphan'").scalar()
    assert {k: where.get(k) for k in EXPECTED} == EXPECTED
    assert tuple(fixed) == ("Élodie", "Durand", "elodie.durand@example.fr", "+33156133890", "FR")
    assert "Carrier Pigeon" in detail  # an unmapped value is named, never silently nulled
    assert "no-such-account" in orphan and "not seen by any lot run" in orphan  # says what became of the parent


def _slice(url: str, table: str, run_id: str, cols: str) -> list[tuple]:
    with engine(url).connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT {cols} FROM {table} WHERE run_id = :r ORDER BY {cols}"),
                                                {"r": run_id})]


def _four_partitions():  # noqa: ANN202
    lot = LOTS["contacts"]
    assert lot.entities["contacts"].dedupe.method == "probabilistic"
    cfg = lot.entities["contacts"]
    return lot, lot.model_copy(update={"entities": {**lot.entities, "contacts": cfg.model_copy(
        update={"dedupe": cfg.dedupe.model_copy(update={"partitions": 4})})}})


def _same_dedupe(url: str, run_a: str, run_b: str) -> None:
    merges = _slice(url, "stg.merge_map", run_a, "legacy_id, survivor_legacy_id, score, rule")
    assert sum(1 for m in merges if m[0] != m[1]) > 10
    assert merges == _slice(url, "stg.merge_map", run_b, "legacy_id, survivor_legacy_id, score, rule")
    review = "legacy_id_a, legacy_id_b, score, agreeing"
    assert _slice(url, "stg.review_pair", run_a, review) == _slice(url, "stg.review_pair", run_b, review)
    # the same survivors, field for field (merged ones built from their cluster, the rest copied in SQL)
    survivor = ", ".join(c for c in stages.CLEAN_COLUMNS["contacts"])
    assert _slice(url, "stg.contacts_dedupe", run_a, survivor) == _slice(url, "stg.contacts_dedupe", run_b, survivor)


def test_partitioned_dedupe_gives_the_single_task_result(legacy_url, target_url):
    """Issue 13: the lot's dedupe as prepare -> one score task per partition (any order, any rerun) ->
    clustering merges, reviews and keeps exactly what the dedupe in one task does on the same rows."""
    import pytest

    from crm_migration.matching import partitioned

    lot, four = _four_partitions()
    for run in ("single", "parts"):
        stages.run_extract(legacy_url, target_url, lot, "contacts", run)
        stages.run_cleanse(target_url, lot, "contacts", run)
    stages.run_dedupe(target_url, lot, "contacts", "single")
    parts = partitioned.prepare(target_url, four, "contacts", "parts")
    assert [p["part"] for p in parts] == [0, 1, 2, 3] and {p["of"] for p in parts} == {4}
    for p in reversed(parts):  # mapped tasks finish in any order
        partitioned.score(target_url, four, "contacts", "parts", p["part"])
    partitioned.score(target_url, four, "contacts", "parts", 2)  # a cleared partition rewrites its slice
    scored = _slice(target_url, "stg.dedupe_score", "parts", "part, compared")
    assert len(scored) == 4 and sum(1 for _, c in scored if c) >= 2, scored  # the pairs spread over partitions
    # a row is in the partitions of its key values only: an empty key puts it in none (else one partition
    # would read every row lacking that key -- 2.4M of 2.6M at 3M contacts, once)
    assert _count(target_url, "SELECT count(*) FROM stg.dedupe_input, generate_subscripts(keys, 1) k WHERE"
                  " run_id = 'parts' AND (keys[k] IS NULL) <> (parts[k] IS NULL)") == 0
    assert _count(target_url, "SELECT count(*) FROM stg.dedupe_input, generate_subscripts(keys, 1) k WHERE"
                  " run_id = 'parts' AND keys[k] IS NULL") > 0
    # each partition kept its pairs above its own cut, above the plan's lowest (every blocked pair a match)
    lowest = _count(target_url, "SELECT cut FROM stg.dedupe_plan WHERE run_id = 'parts'")
    assert all(cut >= lowest for _, cut in _slice(target_url, "stg.dedupe_score", "parts", "part, cut"))
    stages.run_dedupe(target_url, four, "contacts", "parts")
    _same_dedupe(target_url, "single", "parts")
    with engine(target_url).begin() as conn:  # the clean slice rewritten since the plan: refused, not mis-merged
        conn.execute(sa.text("DELETE FROM stg.contacts_cleanse WHERE run_id = 'parts' AND legacy_id ="
                             " (SELECT min(legacy_id) FROM stg.contacts_cleanse WHERE run_id = 'parts')"))
    with pytest.raises(partitioned.StalePlan, match="clear dedupe_prepare_contacts"):
        stages.run_dedupe(target_url, four, "contacts", "parts")


def test_partitions_that_kept_too_few_pairs_are_scored_again(legacy_url, target_url, monkeypatch, caplog):
    """Issue 13: a partition keeps only the pairs above a cut from its own share of matches (a few times it);
    where the share over all partitions is higher than it allowed for, the dedupe task scores it again and
    the result is still the single task's."""
    import logging

    from crm_migration.matching import linkage, partitioned

    lot, four = _four_partitions()
    for run in ("single", "few"):
        stages.run_extract(legacy_url, target_url, lot, "contacts", run)
        stages.run_cleanse(target_url, lot, "contacts", run)
    stages.run_dedupe(target_url, lot, "contacts", "single")
    monkeypatch.setattr(linkage, "SHARE_MARGIN", 1e-9)  # every partition allows for far fewer matches than there are
    for p in partitioned.prepare(target_url, four, "contacts", "few"):
        partitioned.score(target_url, four, "contacts", "few", p["part"])
    with caplog.at_level(logging.WARNING, logger="crm_migration.matching.partitioned"):
        stages.run_dedupe(target_url, four, "contacts", "few")
    assert sum("scored again here" in r.getMessage() for r in caplog.records) >= 2, caplog.text
    _same_dedupe(target_url, "single", "few")


def test_rows_of_arrays_copied_as_csv_come_back_as_they_were(target_url):
    """db.copy_csv_rows (the dedupe's partition input): hostile strings, NULL elements, the string 'NULL',
    empty strings, braces, commas, quotes, backslashes and newlines survive, in arrays and as scalars."""
    from crm_migration.model.db import copy_csv_rows

    strings = [*HOSTILE, "", "NULL", "null", "{a,b}", 'say "hi", then\nleave', "back\\slash", " lead", "\x1ea0"]
    rows = [(k, s, [s, None, s.upper()], [k, None], [0.1 + 0.2, 2.663677171591767e-05, None])
            for k, s in enumerate(strings)]
    with engine(target_url).begin() as conn:
        conn.exec_driver_sql("CREATE TEMP TABLE t (k bigint, s text, a text[], n integer[], f double precision[])")
        assert copy_csv_rows(conn, "t", ("k", "s", "a", "n", "f"), rows) == len(rows)
        got = [(k, s, a, n, f) for k, s, a, n, f in conn.exec_driver_sql("SELECT * FROM t ORDER BY k")]
    assert got == [(k, s, list(a), list(n), list(f)) for k, s, a, n, f in rows]


def test_staging_of_an_older_release_is_renamed_to_the_stage_names(legacy_url, target_url, tmp_path, monkeypatch):
    """Tables are named after the stage that writes them (extract, <e>_cleanse, _dedupe, _transform); a run
    staged by an older release (raw, _clean, _dedup, _target) keeps its rows, so it can still be cleared."""
    from crm_migration.checks import quality
    from crm_migration.model.db import ensure_target_schema
    from crm_migration.model.settings import ConfigError

    stages.run_extract(legacy_url, target_url, LOTS["accounts"], "accounts", "old_run")
    stages.run_cleanse(target_url, LOTS["accounts"], "accounts", "old_run")
    n = _count(target_url, "SELECT count(*) FROM stg.accounts_cleanse WHERE run_id = 'old_run'")
    with engine(target_url).begin() as conn:  # as the older release left them
        conn.exec_driver_sql("ALTER TABLE stg.extract RENAME TO raw; ALTER TABLE stg.accounts_cleanse RENAME TO"
                             " accounts_clean; ALTER INDEX stg.idx_extract_slice_id RENAME TO idx_raw_slice_id")
    ensure_target_schema(target_url)
    assert _count(target_url, "SELECT count(*) FROM stg.accounts_cleanse WHERE run_id = 'old_run'") == n > 0
    assert _count(target_url, "SELECT count(*) FROM stg.extract WHERE run_id = 'old_run'") > 0
    assert _count(target_url, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'stg' AND tablename = 'extract'"
                              " AND indexname = 'idx_extract_slice_id'") == 1
    assert _count(target_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'stg'"
                              " AND tablename IN ('raw', 'accounts_clean')") == 0
    # a team's own contract under the old name would be ignored silently: it fails, naming the file
    (tmp_path / "accounts").mkdir()
    (tmp_path / "accounts" / "clean.yml").write_text("columns: []\n")
    monkeypatch.setattr(quality, "SODA_DIR", tmp_path)
    with pytest.raises(ConfigError, match=r"accounts/clean\.yml: .* rename it cleanse\.yml"):
        quality.contract("accounts", "cleanse")


def test_prepare_on_a_current_schema_takes_no_table_lock(target_url):
    """Every lot's prepare brings the schema up to date; when it already is, it runs no DDL: a no-op ALTER
    TABLE waits for every reader of the table (another lot's report) and once deadlocked with one."""
    import threading

    from crm_migration.model.db import ensure_target_schema

    ensure_target_schema(target_url)
    reader = engine(target_url).connect()
    try:
        reader.execute(sa.text("SELECT count(*) FROM stg.accounts_cleanse"))  # a report reading: a share lock held
        done = threading.Event()
        worker = threading.Thread(target=lambda: (ensure_target_schema(target_url), done.set()), daemon=True)
        worker.start()
        worker.join(timeout=30)
        assert done.is_set(), "prepare waited for a reader's lock: it ran DDL on a current schema"
    finally:
        reader.close()
    worker.join(timeout=30)


def test_a_link_table_reference_keeps_the_link_its_rule_chooses(tmp_path, monkeypatch):
    """A contact at two companies (SuiteCRM's accounts_contacts): the single company the row keeps is the
    smallest live one (choose: smallest, the default), never one soft-deleted in accounts (parent_deleted),
    or the latest link (choose: latest). Read through the real extract on a copy of the legacy CRM."""
    import shutil

    from conftest import ROOT, legacy_copy

    from crm_migration.model.config import load_lots
    from crm_migration.source.sources import open_rows

    _, legacy = legacy_copy("crm_test_legacy_choose")

    def company_of(contact: str) -> str | None:
        lot = next(lot for lot in load_lots() if lot.lot_id == "contacts")
        with open_rows(legacy, lot, "contacts", ids=[contact]) as (_, rows):
            return next(row for _, _, _, row in rows)["account_id"]

    ((contact, first, second),) = _rows(legacy, "SELECT l.contact_id, min(l.account_id), max(l.account_id)"
                                                " FROM accounts_contacts l JOIN accounts a ON a.id = l.account_id"
                                                " AND a.deleted = 0 WHERE l.deleted = 0 GROUP BY l.contact_id"
                                                " HAVING count(DISTINCT l.account_id) = 2 ORDER BY 1 LIMIT 1")
    assert company_of(contact) == first
    with engine(legacy).begin() as conn:
        conn.execute(sa.text("UPDATE accounts SET deleted = 1 WHERE id = :a"), {"a": first})
    assert company_of(contact) == second  # the link to a soft-deleted company is dead
    with engine(legacy).begin() as conn:
        conn.execute(sa.text("UPDATE accounts SET deleted = 0 WHERE id = :a"), {"a": first})
        conn.execute(sa.text("UPDATE accounts_contacts SET date_modified = '2030-01-01' WHERE contact_id = :c"
                             " AND account_id = :a"), {"c": contact, "a": second})
    conf = tmp_path / "config"
    shutil.copytree(ROOT / "config", conf)
    path = conf / "entities" / "02_contacts.yaml"
    path.write_text(path.read_text().replace("parent_deleted: deleted}", "parent_deleted: deleted, choose: latest}"))
    monkeypatch.setenv("CRM_CONFIG_DIR", str(conf))
    assert company_of(contact) == second  # the latest link
    engine(legacy).dispose()


def _rows(url: str, sql: str) -> list[tuple]:
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql)).all()
