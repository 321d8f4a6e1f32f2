"""Verification of content: what the target rows hold, compared with what the legacy rows should produce.

Counting ids proves a row is there, not that it holds the right values or points at the right parent.
Three comparisons, all computed in SQL from the target's own columns:

- ``content_mismatch`` (the loaded gate, for the rows a run wrote): the target row differs from the row
  the run derived from the legacy row (its staged target row: the same cleanse, transform and
  survivorship), columns named;
- ``drifted`` (the freeze and every load): the target row differs from what the migration last left in
  it (``crm_migration.written``): it was changed outside the migration, columns named;
- ``link_missing`` / ``link_wrong`` (both): every reference of a row is resolved again through the
  crosswalk from the legacy parent id the row was built from; the target's column must point there.
  A parent loaded after its child (a retried quarantine, a later lot, a delta) makes the child's empty
  reference resolvable: ``relink`` sets it in the same run and counts it.

The content of a row is its mapped target columns, references apart (they are checked as links), as
JSON with timestamps in UTC; staged values are cast to the target column's own type first.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa

from crm_migration.model.db import engine, sql, sql_text
from crm_migration.model.spec import PerEntity, specs
from crm_migration.rules.transform import MODIFIED_COLUMN, TARGET_TABLE

log = logging.getLogger(__name__)

SAMPLE_IDS = 20
# reference fields with a target column: (field name, field spec)
LINK_FIELDS = PerEntity(lambda es: tuple((n, f) for n, f in es.fields.items() if f.kind == "reference" and f.to))
# target columns compared as values: every mapped column but the id and the references' ids
CONTENT_COLUMNS = PerEntity(lambda es: tuple(
    c for c in es.target_columns if c != "id" and c not in {f.to for _, f in LINK_FIELDS[es.entity]}))


def column_types(conn: sa.Connection, entity: str) -> dict[str, str]:
    """The target table's column types as PostgreSQL names them (a table the team does not own included)."""
    return dict(conn.execute(sa.text(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped"),
        {"t": TARGET_TABLE[entity]}).all())


def content_sql(entity: str, types: dict[str, str], alias: str, cast: bool = False) -> str:
    """A jsonb expression of the row alias's content columns. cast: the values are staged ones, cast to
    the target column's type (what the upsert stores)."""
    pairs = []
    for c in CONTENT_COLUMNS[entity]:
        value = f"CAST({alias}.{c} AS {types[c]})" if cast else f"{alias}.{c}"
        if types[c].startswith("timestamp"):  # the same text whatever the session's time zone
            value = f"({value}) AT TIME ZONE 'UTC'"
        pairs.append(f"'{c}', {value}")
    # jsonb_build_object takes at most 100 arguments: 50 columns a call
    parts = [f"jsonb_build_object({', '.join(pairs[i:i + 50])})" for i in range(0, len(pairs), 50)]
    return "(" + " || ".join(parts or ["'{}'::jsonb"]) + ")"


def _resolved(f, column: str, slot: int, name: str) -> str:  # noqa: ANN001 - a FieldSpec
    """LEFT JOIN of the crosswalk as name, on the legacy id at slot (1: the legacy parent, 2: the default)
    of the row's kept link (alias w): one parent entity reads only its own crosswalk rows."""
    link = f"w.links -> '{column}'"
    xw = "crm_migration.crosswalk"
    if f.entities is None:
        xw = f"(SELECT legacy_id, new_id FROM crm_migration.crosswalk WHERE entity = '{f.entity}')"
        on = f"{name}.legacy_id = {link} ->> {slot}"
    else:
        on = f"{name}.entity = {link} ->> 0 AND {name}.legacy_id = {link} ->> {slot}"
    return f" LEFT JOIN {xw} {name} ON {on}"


def _link_rows(entity: str, f, where: str, cut_aware: bool = True) -> str:  # noqa: ANN001 - a FieldSpec
    """(id, legacy_id, have, want, fallback) of the active target rows with a kept link for f: the
    reference they hold, the target id their legacy parent has now (else their default's), the default's.
    cut_aware: a row cut out of a hierarchy's cycle (crm_migration.link_cut) wants no parent."""
    table = TARGET_TABLE[entity]
    want = "coalesce(x1.new_id, x2.new_id)"
    if f.entity == entity:  # a hierarchy: a row merged with its own parent points at no one, not at itself
        want = f"NULLIF({want}, t.id)"
        if cut_aware:
            want = (f"CASE WHEN EXISTS (SELECT 1 FROM crm_migration.link_cut c WHERE c.entity = '{entity}'"
                    f" AND c.legacy_id = t.legacy_id AND c.col = '{f.to}') THEN NULL ELSE {want} END")
    return (f"SELECT t.id, t.legacy_id, t.{f.to} AS have, {want} AS want,"
            f" x2.new_id AS fallback FROM {table} t JOIN crm_migration.written w ON w.entity = '{entity}'"
            f" AND w.id = t.id{_resolved(f, f.to, 1, 'x1')}{_resolved(f, f.to, 2, 'x2')}"
            f" WHERE t.deleted_at IS NULL AND ({where})")


def link_findings_sql(entity: str, where: str = "TRUE") -> str:
    """(legacy_id, finding, column) of every active target row whose reference differs from where its
    legacy parent is now: link_missing (empty) or link_wrong (elsewhere). where: on t and w."""
    parts = [f"SELECT legacy_id, CASE WHEN have IS NULL THEN 'link_missing' ELSE 'link_wrong' END AS finding,"
             f" '{f.to}'::text AS col FROM ({_link_rows(entity, f, where)}) l WHERE have IS DISTINCT FROM want"
             for _, f in LINK_FIELDS[entity]]
    none = "SELECT NULL::text AS legacy_id, NULL::text AS finding, NULL::text AS col WHERE FALSE"
    return " UNION ALL ".join(parts) or none


@dataclass
class Findings:
    """Content findings of one entity: counts per kind and the first ids with the columns that differ."""

    counts: dict
    samples: dict  # kind -> ["legacy id (column, column)"]

    def add(self, kind: str, rows: list[tuple[str, list[str]]], total: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + total
        if rows:
            self.samples.setdefault(kind, []).extend(f"{lid} ({', '.join(cols)})" for lid, cols in rows)

    def merge(self, other: Findings) -> None:
        for kind, n in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        for kind, samples in other.samples.items():
            self.samples.setdefault(kind, []).extend(samples)


def _collect(conn: sa.Connection, sql: str, params: dict, findings: Findings) -> None:
    """sql returns (legacy_id, finding, column) rows: counted per finding, the first ids kept with columns."""
    rows = conn.execute(sa.text(
        f"SELECT finding, count(DISTINCT legacy_id),"
        f" (array_agg(DISTINCT legacy_id))[1:{SAMPLE_IDS}] FROM ({sql}) f GROUP BY finding"), params).all()
    for kind, n, first in rows:
        cols = conn.execute(sa.text(
            f"SELECT legacy_id, array_agg(DISTINCT col ORDER BY col) FROM ({sql}) f WHERE finding = :kind"
            " AND legacy_id = ANY(:first) GROUP BY legacy_id ORDER BY legacy_id"),
            {**params, "kind": kind, "first": sorted(first)}).all()
        findings.add(kind, [(lid, list(c)) for lid, c in cols], n)


def _diff_sql(entity: str, expected: str, actual: str, source: str, finding: str) -> str:
    """(legacy_id, finding, column) for each column where expected and actual (jsonb) differ."""
    return (f"SELECT d.legacy_id, '{finding}'::text AS finding, e.key AS col FROM (SELECT t.legacy_id,"
            f" {expected} AS expected, {actual} AS actual {source}) d,"
            " jsonb_each(d.expected) e WHERE d.expected IS DISTINCT FROM d.actual"
            " AND e.value IS DISTINCT FROM d.actual -> e.key")


def _side_by_side(url: str, entity: str, queries: list[str], params: dict, findings: Findings) -> Findings:
    """Each query (rows of legacy_id, finding, column) collected on a connection of its own, at once (each may
    read a whole table: the target database's cores do them side by side), merged into findings."""
    def one(query: str) -> Findings:
        found = Findings({}, {})
        with engine(url).begin() as conn:
            _collect(conn, query, params, found)
        return found

    with ThreadPoolExecutor(len(queries), thread_name_prefix=f"content-{entity}") as pool:
        for found in pool.map(one, queries):
            findings.merge(found)
    return findings


def verify_run(url: str, entity: str, lot_id: str, run_id: str) -> Findings:
    """After a load: each target row the run wrote holds what the run derived from its legacy row (columns
    the migration kept by the entity's edit policy apart), and each of its references points where its
    legacy parent is now. The two comparisons run side by side."""
    with engine(url).connect() as conn:
        types = column_types(conn, entity)
    table, modified = TARGET_TABLE[entity], MODIFIED_COLUMN[entity]
    p = {"l": lot_id, "r": run_id, "e": entity}
    # rows the target holds in this run's version (not a newer one a later run applied)
    source = (f"FROM stg.{entity}_transform s JOIN {table} t ON t.id = s.id"
              " JOIN crm_migration.extract_run x ON x.lot_id = s.lot_id AND x.run_id = s.run_id AND x.entity = :e"
              " LEFT JOIN crm_migration.edit_conflict k ON k.lot_id = s.lot_id AND k.run_id = s.run_id"
              "  AND k.entity = :e AND k.id = s.id"
              " WHERE s.lot_id = :l AND s.run_id = :r AND t.deleted_at IS NULL"
              f" AND (t.migrated_legacy_modified IS NULL OR s.{modified} IS NULL"
              f"      OR LEAST(s.{modified}, x.legacy_clock) >= t.migrated_legacy_modified)")
    kept = "coalesce(k.kept, ARRAY[]::text[])"
    expected = f"({content_sql(entity, types, 's', cast=True)} - {kept})"
    actual = f"({content_sql(entity, types, 't')} - {kept})"
    where = (f"EXISTS (SELECT 1 FROM stg.{entity}_transform s WHERE s.lot_id = :l AND s.run_id = :r AND s.id = t.id)")
    return _side_by_side(url, entity, [_diff_sql(entity, expected, actual, source, "content_mismatch"),
                                       link_findings_sql(entity, where)], p,
                         Findings({"content_mismatch": 0, "link_missing": 0, "link_wrong": 0}, {}))


def verify_target(url: str, entity: str) -> Findings:
    """The freeze: every active target row against what the migration left in it (drifted: changed
    outside the migration; unverified: a migrated row the migration has no record of writing), and every
    reference against where its legacy parent is now. The three comparisons run side by side, each on its own
    connection (each reads the whole table: the target database's cores do them at once)."""
    table = TARGET_TABLE[entity]
    with engine(url).connect() as conn:
        types = column_types(conn, entity)
    source = (f"FROM {table} t JOIN crm_migration.written w ON w.entity = :e AND w.id = t.id"
              " WHERE t.deleted_at IS NULL")
    queries = [_diff_sql(entity, "w.content", content_sql(entity, types, "t"), source, "drifted"),
               f"SELECT t.legacy_id, 'unverified'::text AS finding, 'row'::text AS col FROM {table} t"
               " WHERE t.deleted_at IS NULL AND t.migrated_lot_id IS NOT NULL AND NOT EXISTS"
               " (SELECT 1 FROM crm_migration.written w WHERE w.entity = :e AND w.id = t.id)",
               link_findings_sql(entity)]
    return _side_by_side(url, entity, queries, {"e": entity},
                         Findings({"drifted": 0, "unverified": 0, "link_missing": 0, "link_wrong": 0}, {}))


def record_missing_written_sql(entity: str, types: dict[str, str], chunk: str) -> str:
    """Keep what the target holds for each row of the chunk that holds the chunk's version but has no
    record yet (loaded before the migration kept one; write_chunk.sql records the rows it writes)."""
    table = TARGET_TABLE[entity]
    return ("INSERT INTO crm_migration.written AS w (entity, id, legacy_id, content, links, lot_id, run_id)"
            f" SELECT %(entity)s, t.id, t.legacy_id, {content_sql(entity, types, 't')}, coalesce(s.links, '{{}}'),"
            f" %(lot_id)s, %(run_id)s FROM {chunk} s JOIN {table} t ON t.id = s.id"
            " AND t.migrated_row_hash IS NOT DISTINCT FROM s.row_hash"
            " WHERE NOT EXISTS (SELECT 1 FROM crm_migration.written w0 WHERE w0.entity = %(entity)s AND w0.id = t.id)"
            " ON CONFLICT (entity, id) DO NOTHING")


def _keep_pre_images(conn: sa.Connection, table: str, rows: str, params: dict) -> None:
    """The pre-images (for rollback) of the rows of table (t) that rows selects ('JOIN ... WHERE ...'), before
    the caller changes them; params: l, r, e. A row this run inserted has none (a hierarchy: its parent came in
    the same load): a rollback deletes it."""
    conn.execute(sql("load/keep_pre_images.sql", table=table, rows=rows), params)


def relink(conn: sa.Connection, parent: str, lot_id: str, run_id: str) -> dict[str, int]:
    """After a load of parent: every child row whose reference to it was left empty, or given its default,
    while its legacy parent was not in the target (quarantined, in a later lot or delta) is set to that
    parent now that it resolves, its pre-image kept for rollback. Only children of the parent rows this run
    staged are looked at (a delta's few, not every row of the CRM). Returns rows relinked per child entity."""
    out: dict[str, int] = {}
    for child in specs():
        table = TARGET_TABLE[child]
        for _, f in LINK_FIELDS[child]:
            if parent not in f.parents:
                continue
            # the children of the parents this run staged (loaded, merged, re-mapped): a child waits for its own
            # legacy parent (slot 1) or its default (slot 2), and only a run that takes that row can resolve it
            staged = [f"EXISTS (SELECT 1 FROM stg.extract a WHERE a.lot_id = :l AND a.run_id = :r AND a.entity = :p"
                      f" AND a.legacy_id = w.links -> '{f.to}' ->> {slot})" for slot in (1, 2)]
            mine = f"w.links -> '{f.to}' ->> 0 = :p AND ({' OR '.join(staged)})"
            pending = (f"SELECT id, want FROM ({_link_rows(child, f, mine)}) l"
                       " WHERE want IS NOT NULL AND have IS DISTINCT FROM want"
                       " AND (have IS NULL OR have = fallback)")
            p = {"l": lot_id, "r": run_id, "c": child, "p": parent}
            _keep_pre_images(conn, table, f"JOIN ({pending}) x ON x.id = t.id WHERE TRUE", {**p, "e": child})
            n = conn.execute(sa.text(f"UPDATE {table} t SET {f.to} = x.want FROM ({pending}) x WHERE x.id = t.id"),
                             p).rowcount
            if n:
                out[child] = out.get(child, 0) + n
                log.info("relinked %d %s rows to their %s (%s): the parent arrived after them", n, child, parent,
                         f.to)
    return out


def break_cycles(conn: sa.Connection, entity: str, lot_id: str, run_id: str) -> int:
    """A hierarchy a tree cannot hold (A's parent is B, B's parent is A, in the legacy CRM): each cycle
    the run's rows are on is cut at its member with the smallest legacy id, whose reference is left empty
    (its pre-image kept), recorded in crm_migration.link_cut (the link checks then expect it empty) and
    counted in the report. Decided again at every load of a row on it: a cycle the legacy CRM no longer
    has is mended by the relink that follows. Returns the rows cut by this run."""
    cut_now = 0
    for _, f in LINK_FIELDS[entity]:
        if f.entity != entity:
            continue
        p = {"l": lot_id, "r": run_id, "e": entity, "c": f.to}
        wanted = _link_rows(entity, f, "TRUE", cut_aware=False)
        cut = {r[0] for r in conn.execute(sa.text(sql_text(
            "checks/hierarchy_cycles.sql", wanted=wanted, staged=f"stg.{entity}_transform")), p)}
        before = {r[0] for r in conn.execute(sa.text(
            "SELECT legacy_id FROM crm_migration.link_cut WHERE entity = :e AND col = :c"), p)}
        conn.execute(sa.text("DELETE FROM crm_migration.link_cut WHERE entity = :e AND col = :c"
                             " AND legacy_id <> ALL(:keep)"), {**p, "keep": sorted(cut)})
        # a row cut before and loaded again by this run (it changed, or a delta replayed it) came back with its
        # parent: cut it again
        again = {r[0] for r in conn.execute(sa.text(
            f"SELECT legacy_id FROM stg.{entity}_transform WHERE lot_id = :l AND run_id = :r"
            " AND legacy_id = ANY(:c)"), {**p, "c": sorted(cut & before)})}
        new = sorted(cut - before)
        if not new and not again:
            continue
        table = TARGET_TABLE[entity]
        _keep_pre_images(conn, table, "WHERE t.legacy_id = ANY(:n)", {**p, "n": [*new, *sorted(again)]})
        conn.execute(sa.text(f"UPDATE {table} SET {f.to} = NULL WHERE legacy_id = ANY(:n)"),
                     {"n": [*new, *sorted(again)]})
        if not new:
            continue
        conn.execute(sa.text("INSERT INTO crm_migration.link_cut (entity, legacy_id, col, lot_id, run_id)"
                             " SELECT :e, unnest(CAST(:n AS text[])), :c, :l, :r ON CONFLICT DO NOTHING"),
                     {**p, "n": new})
        cut_now += len(new)
        log.warning("%s.%s: %d rows were on a cycle of the hierarchy (A's parent is B, B's is A) in the legacy"
                    " CRM: cut at %s (left empty, crm_migration.link_cut)", entity, f.to, len(new), ", ".join(new[:5]))
    return cut_now
