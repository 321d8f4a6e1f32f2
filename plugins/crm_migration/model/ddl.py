"""Staging and target DDL generated from the entity specs (config/entities/*.yaml).

Additive on an existing database: ``CREATE TABLE IF NOT EXISTS`` then ``ADD COLUMN IF NOT EXISTS`` for
every column, so a field added to a spec reaches a target that is already loaded. A target table the
team does not own (``target.manage_ddl: false``) is never altered: ``check_target`` names the columns
it lacks before a load writes anything.
"""

from __future__ import annotations

import sqlalchemy as sa

from crm_migration.model.spec import KINDS, EntitySpec, RelationSpec, specs, target_schema

# bookkeeping columns of every target table (who loaded which legacy version)
MIGRATED_COLUMNS = (
    ("deleted_at", "timestamptz"),             # set by the delta sync when the legacy row was deleted
    ("migrated_lot_id", "text"),               # the lot run that first inserted the row (rollback deletes it)
    ("migrated_first_run_id", "text"),
    ("migrated_last_run_id", "text"),
    ("migrated_row_hash", "text"),             # hash of the legacy version the row holds (freeze diff)
    ("migrated_legacy_modified", "timestamptz"),  # its legacy modification time: newer wins
)


class TargetMismatch(RuntimeError):
    """The target table lacks columns the spec maps to."""


class TargetRebuilt(RuntimeError):
    """A target table the migration's history says held rows is missing or holds none of them."""


def _staging_type(es: EntitySpec, name: str) -> str:
    return KINDS[es.fields[name].kind][0]


def _add_columns(name: str, columns: list[tuple[str, str]], keys: tuple[str, ...] = ()) -> str:
    """ALTER TABLE adding every column a table made earlier lacks (constraints a filled table could not
    take dropped; a reference keeps its REFERENCES). keys: columns the table was created with, skipped."""
    adds = ",\n    ".join(f"ADD COLUMN IF NOT EXISTS {c} {t.replace(' NOT NULL', '').replace(' UNIQUE', '')}"
                          for c, t in columns if c not in keys)
    return f"ALTER TABLE {name}\n    {adds};"


def _table(name: str, columns: list[tuple[str, str]], keys: tuple[str, ...] = ()) -> str:
    """CREATE TABLE IF NOT EXISTS, then the columns it may lack (additive DDL)."""
    body = ",\n    ".join(f"{c} {t}" for c, t in columns)
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    {body}\n);\n{_add_columns(name, columns, keys)}"


def renamed(old: str, new: str, indexes: dict[str, str]) -> str:
    """Rename a staging table (and its indexes) made by an older release, if it is there and its new name is
    not: a run staged before the upgrade can still be cleared and rerun. old: schema.table; new: table."""
    schema = old.split(".")[0]
    idx = "".join(f" ALTER INDEX IF EXISTS {schema}.{o} RENAME TO {n};" for o, n in indexes.items())
    return (f"DO $$ BEGIN IF to_regclass('{old}') IS NOT NULL AND to_regclass('{schema}.{new}') IS NULL THEN"
            f" ALTER TABLE {old} RENAME TO {new};{idx} END IF; END $$;")


# stage names an older release (before 2026-12-07) used for its staging tables and gate contracts -> today's
RENAMED_STAGES = {"raw": "extract", "clean": "cleanse", "dedup": "dedupe", "target": "transform", "loaded": "load"}


def renamed_staging_sql() -> str:
    """Staging tables are named after the stage that writes them (since 2026-12-07; before: raw, <e>_clean,
    <e>_dedup, <e>_target): an older release's tables renamed, run before the CREATEs."""
    out = [renamed("stg.raw", "extract", {"idx_raw_slice_id": "idx_extract_slice_id"})]
    for e in specs():
        out.append(f"DROP INDEX IF EXISTS stg.idx_{e}_clean_slice;")  # an older index, replaced by _slice_id
        out += [renamed(f"stg.{e}_{old}", f"{e}_{new}", {f"idx_{e}_{old}_slice{s}": f"idx_{e}_{new}_slice{s}"
                                                          for s in ("", "_id")})
                for old, new in RENAMED_STAGES.items() if old in ("clean", "dedup", "target")]  # per-entity tables
    return "\n".join(out)


def staging_sql(es: EntitySpec) -> str:
    e = es.entity
    clean = [("lot_id", "text NOT NULL"), ("run_id", "text NOT NULL"), ("legacy_id", "text NOT NULL")]
    for name, f in es.fields.items():
        clean.append((name, _staging_type(es, name)))
        if f.keep_original:
            clean.append((f"{name}_original", "text"))
        if f.type_from:
            clean.append((f"{name}_type", "text"))
    clean.append(("defect", "text"))  # rules.cleanse.MATCHABLE: quarantined unless it merges into a complete twin
    target = [("lot_id", "text NOT NULL"), ("run_id", "text NOT NULL"), ("id", "uuid NOT NULL"),
              ("legacy_id", "text NOT NULL")]
    for n, f in es.fields.items():
        if f.to:
            target.append((f.to, KINDS[f.kind][1] if f.kind == "reference" else _staging_type(es, n)))
        if f.type_to:
            target.append((f.type_to, "text"))
    target.append(("row_hash", "text"))  # the legacy version each row was built from
    target.append(("links", "jsonb"))  # the legacy parents its references point at (crm_migration.content)
    return "\n".join((
        _table(f"stg.{e}_cleanse", clean),
        # legacy_id too: the partitioned dedupe reads its clusters' rows by id (was a scan of the slice per 50k ids)
        f"CREATE INDEX IF NOT EXISTS idx_{e}_cleanse_slice_id ON stg.{e}_cleanse (lot_id, run_id, legacy_id);",
        f"CREATE TABLE IF NOT EXISTS stg.{e}_dedupe (LIKE stg.{e}_cleanse);",
        _add_columns(f"stg.{e}_dedupe", clean),
        f"CREATE INDEX IF NOT EXISTS idx_{e}_dedupe_slice ON stg.{e}_dedupe (lot_id, run_id);",
        _table(f"stg.{e}_transform", target),
        f"CREATE INDEX IF NOT EXISTS idx_{e}_transform_slice ON stg.{e}_transform (lot_id, run_id, legacy_id);",
    ))


def target_columns_ddl(es: EntitySpec) -> list[tuple[str, str]]:
    """(column, type) of the entity's target table, FKs as REFERENCES to the parent's table."""
    schema, all_specs = target_schema(), specs()
    cols = [("id", "uuid PRIMARY KEY"), ("legacy_id", "text NOT NULL UNIQUE")]
    for f in es.fields.values():
        if not f.to:
            continue
        kind_type = KINDS[f.kind][1]
        if f.type_to:  # polymorphic: the parent's id and its entity, no foreign key
            cols += [(f.to, "uuid"), (f.type_to, "text")]
            continue
        if f.kind == "reference":
            parent = all_specs[f.entity].target.table
            kind_type = f"uuid REFERENCES {schema}.{parent} (id) ON DELETE SET NULL"
        elif f.required:
            kind_type += " NOT NULL"
        cols.append((f.to, kind_type))
    return cols + list(MIGRATED_COLUMNS)


def target_sql(es: EntitySpec) -> str:
    schema, table = target_schema(), es.target.table
    name = f"{schema}.{table}"
    out = [_table(name, target_columns_ddl(es), keys=("id", "legacy_id"))]
    for f in es.fields.values():
        if f.to and f.indexed:
            expr = f"lower({f.to})" if f.indexed == "lower" else f.to
            out.append(f"CREATE INDEX IF NOT EXISTS idx_{table}_{f.to} ON {name} ({expr});")
    return "\n".join(out)


def crosswalk_sql() -> str:
    """The crosswalk (legacy id -> new id) later entities remap references through: the target tables
    themselves (loaded rows) and crm_migration.merged (rows merged into a survivor)."""
    schema = target_schema()
    parts = [f"SELECT '{s.entity}'::text AS entity, legacy_id, id AS new_id, NULL::text AS merged_into,"
             f" migrated_lot_id AS lot_id, migrated_first_run_id AS first_run_id,"
             f" migrated_last_run_id AS last_run_id FROM {schema}.{s.target.table}" for s in specs().values()]
    parts.append("SELECT entity, legacy_id, new_id, merged_into, lot_id, first_run_id, last_run_id"
                 " FROM crm_migration.merged")
    return ("CREATE OR REPLACE VIEW crm_migration.crosswalk AS\n    "
            + "\n    UNION ALL\n    ".join(parts) + ";")


def relation_sql(es: EntitySpec, rel: RelationSpec) -> str:
    """A target link table: one row per (this row, other row) pair, each end a foreign key (a row deleted
    takes its links with it), the legacy link it came from, and the run that wrote it. A relation to values
    (no entity: a person's e-mails) keeps the value itself."""
    schema, all_specs = target_schema(), specs()
    name, t = f"{schema}.{rel.target.table}", rel.target
    cols = [(t.key, f"uuid NOT NULL REFERENCES {schema}.{es.target.table} (id) ON DELETE CASCADE"),
            (t.value, "text NOT NULL" if rel.entity is None else
             f"uuid NOT NULL REFERENCES {schema}.{all_specs[rel.entity].target.table} (id) ON DELETE CASCADE"),
            *((c, "text") for c in rel.columns.values()), ("is_primary", "boolean NOT NULL DEFAULT false"),
            ("legacy_key", "text NOT NULL"), ("legacy_value", "text NOT NULL"), ("migrated_lot_id", "text"),
            ("migrated_run_id", "text"), ("migrated_at", "timestamptz NOT NULL DEFAULT now()")]
    return "\n".join((
        _table(name, cols, keys=(t.key, t.value)).replace(
            "\n);", f",\n    PRIMARY KEY ({t.key}, {t.value})\n);", 1),
        f"CREATE INDEX IF NOT EXISTS idx_{rel.target.table}_{t.value} ON {name} ({t.value});",
    ))


def target_ddl() -> str:
    """Target tables (those the team owns), parents first, then the link tables of their relations."""
    return "\n".join([f"CREATE SCHEMA IF NOT EXISTS {target_schema()};"]
                     + [target_sql(s) for s in specs().values() if s.target.manage_ddl]
                     + [relation_sql(s, r) for s in specs().values() for r in s.relations.values()])


def staging_ddl() -> str:
    return "\n".join(staging_sql(s) for s in specs().values())


def check_target(conn: sa.Connection, entity: str) -> None:
    """Fail, naming them, when the target table lacks columns the spec maps to."""
    es = specs()[entity]
    have = {r[0] for r in conn.execute(sa.text(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = :t"),
        {"s": target_schema(), "t": es.target.table})}
    need = [c for c, _ in target_columns_ddl(es)]
    missing = [c for c in need if c not in have]
    if missing:
        where = f"{target_schema()}.{es.target.table}"
        raise TargetMismatch(f"{where} lacks the columns {missing} that config/entities ({entity}) maps to"
                             + (" (the table does not exist)" if not have else "")
                             + ": add them, or remove the fields' `to`")


def record_target_rows(conn: sa.Connection, entity: str, lot_id: str, run_id: str) -> int:
    """After the migration wrote to the entity's table: how many migrated rows it holds now
    (crm_migration.target_history, read by check_not_rebuilt)."""
    table = f"{target_schema()}.{specs()[entity].target.table}"
    n = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE migrated_lot_id IS NOT NULL")).scalar_one()
    conn.execute(sa.text(
        "INSERT INTO crm_migration.target_history (entity, target_table, rows_held, lot_id, run_id)"
        " VALUES (:e, :t, :n, :l, :r) ON CONFLICT (entity) DO UPDATE SET target_table = EXCLUDED.target_table,"
        " rows_held = EXCLUDED.rows_held, lot_id = EXCLUDED.lot_id, run_id = EXCLUDED.run_id, updated_at = now()"),
        {"e": entity, "t": table, "n": n, "l": lot_id, "r": run_id})
    return n


def check_not_rebuilt(conn: sa.Connection) -> None:
    """Before any DDL: fail, naming it, when a table the migration's history says held migrated rows is
    missing or holds none of them (dropped, renamed, emptied outside the migration, or the wrong
    database). The DDL would re-create it empty and the next load would insert into it as if it were new."""
    if conn.execute(sa.text("SELECT to_regclass('crm_migration.target_history')")).scalar() is None:
        return  # a new target: no history yet
    broken = []
    for entity, table, held, lot_id, run_id in conn.execute(sa.text(
            "SELECT entity, target_table, rows_held, lot_id, run_id FROM crm_migration.target_history"
            " WHERE rows_held > 0 ORDER BY entity")):
        if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": table}).scalar() is None:
            state = "is missing"
        elif conn.execute(sa.text(f"SELECT NOT EXISTS (SELECT 1 FROM {table} WHERE migrated_lot_id IS NOT NULL)")
                          ).scalar():
            state = "holds none of them"
        else:
            continue
        broken.append(f"{table} ({entity}) {state}: the migration left {held} rows in it (run {lot_id}/{run_id})")
    if broken:
        raise TargetRebuilt(
            "the target was changed outside the migration: " + "; ".join(broken) + ". Nothing was created or"
            " loaded. Restore the table (or point the crm_target connection at the right database); to start a"
            " target over on purpose, drop its schemas, crm_migration included.")
