"""Many-to-many relations (config/entities: relations): the legacy CRM's link tables migrated to target
link tables, and the check that the target holds every live link.

A relation is synced whole after every load of either of its entities (lot runs and the delta sync
alike): the live legacy links are read again from the legacy CRM, each end mapped to its active target
row through the crosswalk (merged rows stand for their survivor), and the target link table is brought
to them in one transaction: new pairs inserted, changed ones updated, links the migration wrote whose
legacy link is gone (deleted or soft-deleted in the legacy CRM, an end deleted) removed. A link table has
no reliable date, so comparing key sets is the only way to see a deleted link. Links made in the new CRM
itself (no ``migrated_lot_id``) are never touched.

The load's gate reads the legacy links once more and counts, by id against the target: legacy links =
linked (both ends active target rows, the pair present) + end_missing (an end missing, excluded,
quarantined or deleted); ``lost`` (a linked pair the target lacks) and ``unexpected`` (a migrated link no
live legacy link stands for) fail it.

A delta syncs and checks only the links of the target rows it touches (``_scope``): the rows it read or deleted
(at either end), the rows whose legacy link rows changed since the last sync (checksums of the link rows by
their key's range, kept by every sync: stages/checksums), and with each target row every legacy row that
stands for it (a merged customer's members). A lot, a first delta, a source that does not hash, or a delta
where most ranges changed syncs whole.

``RowValues`` gives the extract a row's values in a relation (values_of: a person's every e-mail, for the dedupe):
a lot reads the relation once, a delta the rows it stages only.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator

import sqlalchemy as sa

from crm_migration.model.config import EntityConfig, load_lots
from crm_migration.model.db import copy_rows, engine, split_statements, sql, sql_text
from crm_migration.model import slices
from crm_migration.model.workers import default_processes, in_processes
from crm_migration.model.spec import RelationSpec, spec, specs, target_schema
from crm_migration.rules.cleanse import clean_country, clean_email, clean_phone
from crm_migration.rules.transform import TARGET_TABLE
from crm_migration.source import anonymise
from crm_migration.source.sources import relation_rows
from crm_migration.stages.checksums import (Sums, differing, keep_sums, kept_sums, link_keys, link_sums, links_key,
                                           worth_it)

log = logging.getLogger(__name__)
FAILING = ("lost", "unexpected")


def relations_of(entity: str) -> list[tuple[str, str, RelationSpec]]:
    """(owning entity, relation name, spec) of every relation with entity at either end."""
    return [(owner, name, rel) for owner, es in specs().items() for name, rel in es.relations.items()
            if entity in (owner, rel.entity)]


def _identifiers(owner: str, rel: RelationSpec) -> dict[str, str]:
    cols = list(rel.columns.values())
    return {"table": f"{target_schema()}.{rel.target.table}", "key": rel.target.key, "value": rel.target.value,
            "key_table": TARGET_TABLE[owner], "value_table": TARGET_TABLE[rel.entity] if rel.entity else "",
            "extra_cols": "".join(f", {c}" for c in cols), "extra_m": "".join(f", m.{c}" for c in cols),
            "extra_set": "".join(f"{c} = EXCLUDED.{c}, " for c in cols),
            "extra_t": "".join(f"t.{c}, " for c in cols), "extra_x": "".join(f"EXCLUDED.{c}, " for c in cols)}


def _region(entity: str) -> str:
    """The default region of the entity's phones: the first lot that migrates it says (else the default)."""
    return next((lot.entities[entity].default_region for lot in load_lots() if entity in lot.entities),
                EntityConfig.model_fields["default_region"].default)


def cleaned(owner: str, rel: RelationSpec, rows: Iterable[tuple]) -> Iterator[tuple]:
    """A relation to values through its kind's rule; the value as written (trimmed) where the rule rejects it.
    More than a batch of rows (a relation read whole): the batches on worker processes (model/workers)."""
    if rel.kind == "text":
        yield from rows
        return
    it, region = iter(rows), _region(owner)  # (the lot files read once, not per batch)
    parts = iter(lambda: list(itertools.islice(it, slices.BATCH_ROWS)), [])
    for part in in_processes(cleaned_batch, ((rel, region, part) for part in parts), default_processes()):
        yield from part


def cleaned_batch(rel: RelationSpec, region: str, rows: list[tuple]) -> list[tuple]:
    """cleaned's rule on one batch of rows (in a worker process, or here); region: the phones' default."""
    out = []
    for k, v, p, cols in rows:
        if rel.region_from:  # the row's country, last (relation_rows)
            cols, country = cols[:-1], clean_country(cols[-1])
        clean = clean_email(v)[0] if rel.kind == "email" else clean_phone(v, country or region if rel.region_from
                                                                          else region)
        out.append((k, clean or v.strip() or v, p, cols))
    return out


class RowValues:
    """For an entity with values_of fields (config/entities: a person's every e-mail, for the dedupe):
    (legacy id, row JSON) -> the JSON with each such field set to the row's values in its relation, sorted,
    space-separated (null without any), through the relation's kind's rule. A lot reads each relation once,
    whole; a delta (fetch) reads the values of the rows it stages only."""

    def __init__(self, legacy_url: str, entity: str, fields: list[tuple[str, str]], whole: bool) -> None:
        self.legacy_url, self.entity, self.whole = legacy_url, entity, whole
        self.fields = [(json.dumps(column), name) for column, name in fields]
        self.maps: list[dict[str, str]] = [{} for _ in fields]
        self.fetched: set[str] = set()
        if whole:
            self._read(None)

    @classmethod
    def of(cls, legacy_url: str, entity: str, whole: bool) -> RowValues | None:
        es = spec(entity)
        fields = [(es.source_of(n), f.values_of) for n, f in es.fields.items() if f.values_of]
        return cls(legacy_url, entity, fields, whole) if fields else None

    def _read(self, keys: list[str] | None) -> None:
        rels = spec(self.entity).relations
        for (_, name), found in zip(self.fields, self.maps, strict=True):
            sets: dict[str, set[str]] = {}
            for k, v, _, _ in cleaned(self.entity, rels[name], relation_rows(self.legacy_url, rels[name],
                                                                                         keys)):
                sets.setdefault(k, set()).add(v)
            found.update({k: json.dumps(" ".join(sorted(vs))) for k, vs in sets.items()})

    def fetch(self, ids: list[str | None]) -> None:
        """A delta: the values of these rows, read before they are staged."""
        todo = sorted({i for i in ids if i is not None} - self.fetched)
        if not self.whole and todo:
            self._read(todo)
            self.fetched.update(todo)

    def __call__(self, legacy_id: str | None, data: str) -> str:
        return data[:-1] + "".join(f", {c}: {m.get(legacy_id, 'null')}"
                                   for (c, _), m in zip(self.fields, self.maps, strict=True)) + "}"


def _stage_legacy(conn: sa.Connection, owner: str, rel: RelationSpec, rows: Iterator[tuple]) -> int:
    """The live legacy links into pg_temp.relation_legacy, then mapped (include/sql/relations/mapped.sql). A
    relation to values of a target holding masked rows (a rehearsal on anonymised data) is masked first."""
    mask = anonymise.relation_mask(conn, rel.kind) if rel.entity is None else None
    if mask is not None:
        rows = ((k, mask(v), p, cols) for k, v, p, cols in rows)
    rows = cleaned(owner, rel, rows)
    extra = list(rel.columns.values())
    conn.exec_driver_sql(
        "CREATE TEMP TABLE relation_legacy (legacy_key text NOT NULL, legacy_value text NOT NULL,"
        f" is_primary boolean NOT NULL{''.join(f', {c} text' for c in extra)}) ON COMMIT DROP")
    n = copy_rows(conn, "pg_temp.relation_legacy", ("legacy_key", "legacy_value", "is_primary", *extra),
                  ((k, v, p, *cols) for k, v, p, cols in rows))
    conn.exec_driver_sql("ANALYZE pg_temp.relation_legacy")
    mapped = "relations/mapped.sql" if rel.entity else "relations/mapped_values.sql"
    for statement in split_statements(sql_text(mapped, **_identifiers(owner, rel))):
        conn.execute(sa.text(statement), {"key_entity": owner, "value_entity": rel.entity})
    return n


def _lock(conn: sa.Connection, rel: RelationSpec) -> None:
    """One writer per link table (two lots' loads, or a lot and the delta, may sync it at once)."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": f"relation:{rel.target.table}"})


def _scope(url: str, legacy_url: str, owner: str, rel: RelationSpec, entity: str, lot_id: str, run_id: str,
           sums: Sums | None) -> list[str] | None:
    """The legacy keys whose links a delta syncs (module docstring); None: every link (no checksums kept: a
    source that does not hash, or no sync since the last rollback). sums: the link rows' checksums now (None: the
    check after the sync, which kept them: only the run's rows)."""
    with engine(url).connect() as conn:
        kept = kept_sums(conn, links_key(rel))
        changed = differing(sums, kept) if sums is not None else set()
        if not kept or not worth_it(changed):
            return None
        ids = [r[0] for r in conn.execute(sa.text(
            "SELECT legacy_id FROM stg.extract WHERE lot_id = :l AND run_id = :r AND entity = :e"
            " AND legacy_id IS NOT NULL UNION SELECT legacy_id FROM crm_migration.deletion WHERE lot_id = :l"
            " AND run_id = :r AND entity = :e"), {"l": lot_id, "r": run_id, "e": entity})]
    keys = set(ids) if entity == owner else set()
    values = ids if entity == rel.entity else []
    if changed or values:
        keys |= link_keys(legacy_url, rel, changed, values)
    ident = _identifiers(owner, rel)
    with engine(url).connect() as conn:
        targets = set(conn.execute(sa.text("SELECT new_id FROM crm_migration.crosswalk WHERE entity = :o"
                                           " AND legacy_id = ANY(:k)"), {"o": owner, "k": sorted(keys)}).scalars())
        if values:  # the target rows linked to a row of the other end the run touched
            targets |= set(conn.execute(sa.text(
                f"SELECT DISTINCT t.{ident['key']} FROM {ident['table']} t JOIN crm_migration.crosswalk x"
                f" ON x.entity = :v AND x.new_id = t.{ident['value']} WHERE x.legacy_id = ANY(:ids)"),
                {"v": rel.entity, "ids": values}).scalars())
        keys |= set(conn.execute(sa.text("SELECT legacy_id FROM crm_migration.crosswalk WHERE entity = :o"
                                         " AND new_id = ANY(:t)"), {"o": owner, "t": sorted(targets)}).scalars())
    return sorted(keys)


def _staged(conn: sa.Connection, url: str, legacy_url: str, owner: str, rel: RelationSpec, entity: str,
            lot_id: str, run_id: str, scoped: bool, sums: Sums | None) -> tuple[int, str, list[str] | None]:
    """The legacy links staged and mapped (every one, or a delta's scope): (rows, the SQL condition on a target
    link row's key that limits the comparison to the scope, the scope's keys)."""
    keys = _scope(url, legacy_url, owner, rel, entity, lot_id, run_id, sums) if scoped else None
    read = _stage_legacy(conn, owner, rel, relation_rows(legacy_url, rel, keys))
    if keys is None:
        return read, "", None
    conn.execute(sa.text("CREATE TEMP TABLE relation_scope ON COMMIT DROP AS SELECT DISTINCT new_id AS key_id"
                         " FROM crm_migration.crosswalk WHERE entity = :o AND legacy_id = ANY(:k)"),
                 {"o": owner, "k": keys})
    key = _identifiers(owner, rel)["key"]
    return read, f" AND t.{key} IN (SELECT key_id FROM pg_temp.relation_scope)", keys


def sync(url: str, legacy_url: str, lot_id: str, run_id: str, entity: str, scoped: bool = False
         ) -> dict[str, dict]:
    """After a load of entity: every relation it is an end of, synced whole (scoped, a delta: the links of the
    target rows it touches, see the module's docstring). Returns counts per relation."""
    out = {}
    for owner, name, rel in relations_of(entity):
        ids = _identifiers(owner, rel)
        sums = link_sums(legacy_url, rel)  # before the read: a link changed after it is the next sync's
        with engine(url).begin() as conn:
            _lock(conn, rel)
            read, in_scope, keys = _staged(conn, url, legacy_url, owner, rel, entity, lot_id, run_id, scoped, sums)
            deleted = conn.execute(sql("relations/delete_gone.sql", **ids, in_scope=in_scope)).rowcount
            written = conn.execute(sql("relations/upsert.sql", **ids), {"l": lot_id, "r": run_id}).rowcount
            pairs = conn.execute(sa.text("SELECT count(*) FROM pg_temp.relation_mapped")).scalar_one()
            keep_sums(conn, links_key(rel), sums)
        out[f"{owner}.{name}"] = {"legacy_links": read, "pairs": pairs, "written": written, "deleted": deleted}
        log.info("relation %s.%s (%s): %d live legacy links%s, %d target pairs; %d written, %d deleted", owner,
                 name, rel.target.table, read, "" if keys is None else f" of {len(keys)} keys the delta touches",
                 pairs, written, deleted)
    return out


def check(url: str, legacy_url: str, entity: str, owned_only: bool = False, lot_id: str = "", run_id: str = "",
          scoped: bool = False) -> dict[str, dict]:
    """Every relation of entity (owned_only: those its entity file declares), counted by id against the
    target (see the module's docstring); scoped (a delta's gate): the links of the rows the run touched."""
    out = {}
    for owner, name, rel in relations_of(entity):
        if owned_only and owner != entity:
            continue
        with engine(url).begin() as conn:
            _, in_scope, _ = _staged(conn, url, legacy_url, owner, rel, entity, lot_id, run_id, scoped, None)
            row = conn.execute(sql("relations/compare.sql", **_identifiers(owner, rel), in_scope=in_scope)
                               ).mappings().one()
        out[f"{owner}.{name}"] = {k: (list(v or []) if k == "lost_ids" else int(v)) for k, v in row.items()}
    return out


def freeze_findings(url: str, legacy_url: str, entity: str) -> tuple[dict, dict, dict]:
    """The freeze's view of the relations an entity declares: (counts per relation, failing counts as
    links_lost / links_unexpected, the first lost links as key-value legacy ids)."""
    per, failing, first = check(url, legacy_url, entity, owned_only=True), {}, {}
    for c in per.values():
        for kind in FAILING:
            failing[f"links_{kind}"] = failing.get(f"links_{kind}", 0) + c[kind]
        first.setdefault("links_lost", []).extend(c["lost_ids"])
    return per, failing, first
