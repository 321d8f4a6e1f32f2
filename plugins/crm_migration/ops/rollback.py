"""Rollback of one run (a lot run or a delta run) from its pre-images, and of the later runs it needs.

Rows the run inserted are deleted, rows it updated or deleted are put back exactly as they were
(``row_before`` holds the whole target row, children's references included when a hard delete had
set them NULL), crosswalk entries it created are removed and the watermark it moved is restored.

A run can be rolled back alone only if no later applied run touched the same target rows (updated
them, inserted rows pointing to rows it inserted, merged rows into them). Otherwise the rollback is
refused, naming those runs; a dry run lists them, and ``cascade`` then takes every one of them back
first, newest first -- only if they are still the runs the dry run listed. Everything happens in
one transaction; a rollback is recorded and never replayed.
"""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from crm_migration.model.config import ENTITIES, validate_key
from crm_migration.model.db import engine, sql, sql_text
from crm_migration.model.spec import PerEntity
from crm_migration.model.ddl import MIGRATED_COLUMNS, record_target_rows
from crm_migration.rules.transform import FOREIGN_KEYS, TARGET_TABLE
from crm_migration.stages.checksums import forget_id_sums, forget_sums, links_key
from crm_migration.stages.relations import relations_of

log = logging.getLogger(__name__)
TARGET_ALL_COLUMNS = PerEntity(lambda es: (*es.target_columns, *(c for c, _ in MIGRATED_COLUMNS)))
# children of each entity in the target model: (child entity, fk column), from the entity specs
CHILDREN = PerEntity(lambda es: tuple((child, target_col) for child in ENTITIES
                                      for _, p, target_col in FOREIGN_KEYS[child] if p == es.entity))


class RollbackRefused(RuntimeError):
    """Rolling back would undo or orphan what other runs did; nothing was changed."""


def _inserted(table: str) -> str:
    """The legacy ids of the rows a run (:l, :r, entity :e) inserted into table (include/sql/rollback/)."""
    return sql_text("rollback/inserted.sql", table=table)


def plan(url: str, lot_id: str, run_id: str) -> dict:
    """Rows to restore (pre-images) and to delete (inserted), per entity."""
    validate_key(lot_id, run_id)
    out: dict = {}
    with engine(url).connect() as conn:
        for entity in ENTITIES:
            p = {"l": lot_id, "r": run_id, "e": entity}
            inserted = conn.execute(sa.text(
                f"SELECT count(*) FROM ({_inserted(TARGET_TABLE[entity])}) i"), p).scalar_one()
            updated = conn.execute(sa.text(
                "SELECT count(*) FROM crm_migration.pre_image WHERE lot_id = :l AND run_id = :r AND entity = :e"
                " AND action = 'update'"), p).scalar_one()
            moved = conn.execute(sa.text(
                "SELECT count(*) FROM crm_migration.watermark_pre_image WHERE lot_id = :l AND run_id = :r"
                " AND entity = :e"), p).scalar_one()
            if inserted or updated or moved:
                out[entity] = {"insert": inserted, "update": updated}
    return out


# --- which later runs touched the same rows ------------------------------------------------------

def _footprint(conn: sa.Connection, lot_id: str, run_id: str) -> tuple[dict, dict, dict]:
    """(touched, inserted, referenced) target ids per entity: rows the run changed or inserted, rows
    it inserted, and rows its rows point to (foreign keys, merged entries)."""
    touched, inserted, refs = ({e: set() for e in ENTITIES} for _ in range(3))
    p = {"l": lot_id, "r": run_id}
    for entity in ENTITIES:
        table = TARGET_TABLE[entity]
        inserted[entity] = {str(r[0]) for r in conn.execute(sa.text(
            f"SELECT id FROM {table} WHERE migrated_lot_id = :l AND migrated_first_run_id = :r"), p)}
        touched[entity] = inserted[entity] | {str(r[0]) for r in conn.execute(sa.text(
            "SELECT coalesce(target_id, (row_before ->> 'id')::uuid) FROM crm_migration.pre_image"
            " WHERE lot_id = :l AND run_id = :r AND entity = :e"), {**p, "e": entity}) if r[0] is not None}
        refs[entity] |= {str(r[0]) for r in conn.execute(sa.text(
            "SELECT new_id FROM crm_migration.merged WHERE entity = :e AND lot_id = :l AND first_run_id = :r"
            " UNION SELECT new_id FROM crm_migration.crosswalk_pre_image WHERE lot_id = :l AND run_id = :r"
            " AND entity = :e"), {**p, "e": entity})}
    for entity in ENTITIES:
        ids = sorted(touched[entity])
        for _, parent, col in FOREIGN_KEYS[entity]:
            if ids:
                refs[parent] |= {str(r[0]) for r in conn.execute(sa.text(
                    f"SELECT DISTINCT {col} FROM {TARGET_TABLE[entity]} WHERE id = ANY(CAST(:ids AS uuid[]))"
                    f" AND {col} IS NOT NULL"), {"ids": ids})}
    return touched, inserted, refs


def latest_run(url: str, lot_id: str) -> str:
    """The lot's latest applied run that is not rolled back yet: what an empty run_id param means."""
    with engine(url).connect() as conn:
        run_id = conn.execute(sa.text("SELECT run_id FROM crm_migration.applied_run WHERE lot_id = :l"
                                      " ORDER BY seq DESC LIMIT 1"), {"l": lot_id}).scalar()
    if run_id is None:
        raise ValueError(f"lot {lot_id!r} has no applied run left to roll back (crm_migration.applied_run)")
    return run_id


def later_runs(conn: sa.Connection, lot_id: str, run_id: str) -> list[tuple[str, str]]:
    """Runs applied after this one (and not rolled back) that touched its rows, or rows of such a run,
    oldest first: they must be rolled back before it."""
    seq = conn.execute(sa.text("SELECT seq FROM crm_migration.applied_run WHERE lot_id = :l AND run_id = :r"),
                       {"l": lot_id, "r": run_id}).scalar()
    if seq is None:
        return []
    candidates = conn.execute(sa.text(
        "SELECT lot_id, run_id FROM crm_migration.applied_run WHERE seq > :s ORDER BY seq"), {"s": seq}).all()
    touched, inserted, _ = _footprint(conn, lot_id, run_id)
    out = []
    for lot2, run2 in candidates:
        t2, i2, r2 = _footprint(conn, lot2, run2)
        if any(touched[e] & t2[e] or inserted[e] & r2[e] for e in ENTITIES):
            out.append((lot2, run2))
            for e in ENTITIES:
                touched[e] |= t2[e]
                inserted[e] |= i2[e]
    return out


# --- one run -------------------------------------------------------------------------------------

def _check_children(conn: sa.Connection, lot_id: str, run_id: str, entity: str) -> None:
    inserted = _inserted(TARGET_TABLE[entity])
    for child, fk in CHILDREN[entity]:
        table = TARGET_TABLE[child]
        # a hierarchy (a row pointing at a row of its own entity): rows the run inserted go with their parent
        same_run = f" AND c.legacy_id NOT IN ({inserted})" if child == entity else ""
        n = conn.execute(sa.text(
            f"SELECT count(*) FROM {table} c JOIN {TARGET_TABLE[entity]} t ON t.id = c.{fk}"
            f" WHERE t.legacy_id IN ({inserted}){same_run}"),
            {"e": entity, "l": lot_id, "r": run_id}).scalar_one()
        if n:
            raise RollbackRefused(
                f"{n} rows of {table} point to {entity} inserted by run {run_id}: roll back the runs that"
                f" loaded them first ({table}.migrated_first_run_id tells which)")


def _rollback_one(conn: sa.Connection, lot_id: str, run_id: str, by: str) -> dict:
    """Undo one run inside the caller's transaction: inserted rows go (children first), then pre-images
    come back (parents first, so restored children's references find their parent)."""
    p = {"l": lot_id, "r": run_id}
    result: dict = {e: {"restored": 0, "deleted": 0, "crosswalk_removed": 0, "watermark_restored": False}
                    for e in ENTITIES}
    for entity in reversed(ENTITIES):
        table = TARGET_TABLE[entity]
        _check_children(conn, lot_id, run_id, entity)
        result[entity]["deleted"] = conn.execute(sa.text(
            f"DELETE FROM {table} WHERE legacy_id IN ({_inserted(table)})"), {**p, "e": entity}).rowcount
    for entity in ENTITIES:
        table, cols = TARGET_TABLE[entity], TARGET_ALL_COLUMNS[entity]
        result[entity]["restored"] = conn.execute(sql(
            "rollback/restore_rows.sql", table=table, columns=", ".join(cols),
            b_columns=", ".join(f"b.{c}" for c in cols),
            updates=", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "id")), {**p, "e": entity}).rowcount
        _restore_written(conn, lot_id, run_id, entity)
        result[entity]["crosswalk_removed"] = conn.execute(sa.text(
            "DELETE FROM crm_migration.merged WHERE entity = :e AND lot_id = :l AND first_run_id = :r"),
            {**p, "e": entity}).rowcount
        conn.execute(sql("rollback/restore_merged.sql"), {**p, "e": entity})
        marks = conn.execute(sa.text(
            "SELECT scope, modified_at, had_watermark FROM crm_migration.watermark_pre_image"
            " WHERE lot_id = :l AND run_id = :r AND entity = :e"), {**p, "e": entity}).all()
        for scope, modified_at, had_watermark in marks:
            if had_watermark:  # never forward: an earlier run rolled back first left its changes before it
                conn.execute(sa.text("UPDATE crm_migration.watermark SET modified_at = LEAST(modified_at, :m),"
                                     " run_id = :r, updated_at = now() WHERE entity = :e AND scope = :s"),
                             {"m": modified_at, "r": f"rollback of {run_id}", "e": entity, "s": scope})
            else:
                conn.execute(sa.text("DELETE FROM crm_migration.watermark WHERE entity = :e AND scope = :s"),
                             {"e": entity, "s": scope})
        result[entity]["watermark_restored"] = bool(marks)
        # the run's fates go with it: its rows are unaccounted for until a run takes them again
        conn.execute(sa.text("DELETE FROM crm_migration.legacy_ledger WHERE entity = :e AND lot_id = :l"
                             " AND run_id = :r"), {**p, "e": entity})
        forget_id_sums(conn, entity)  # the next delta reads every legacy id again (hard deletes)
        for _, _, rel in relations_of(entity):  # and syncs its relations whole
            forget_sums(conn, links_key(rel))
    for entity, r in result.items():  # what the tables hold now (a rollback may empty one on purpose)
        if r["restored"] or r["deleted"]:
            record_target_rows(conn, entity, "rollback", run_id)
    for table in ("pre_image", "crosswalk_pre_image", "watermark_pre_image", "applied_run", "edit_conflict"):
        conn.execute(sa.text(f"DELETE FROM crm_migration.{table} WHERE lot_id = :l AND run_id = :r"), p)
    conn.execute(sa.text("INSERT INTO crm_migration.rollback_log (lot_id, run_id, rolled_back_by)"
                         " VALUES (:l, :r, :b)"), {**p, "b": by})
    for entity, r in result.items():
        if r["restored"] or r["deleted"] or r["crosswalk_removed"]:
            log.info("rollback %s of %s/%s: %d rows restored, %d inserted rows deleted, %d crosswalk rows removed",
                     entity, lot_id, run_id, r["restored"], r["deleted"], r["crosswalk_removed"])
    return {e: r for e, r in result.items() if any(r.values())}


def _restore_written(conn: sa.Connection, lot_id: str, run_id: str, entity: str) -> None:
    """The migration's record of what it left in each row (crm_migration.written) goes back with the rows:
    as it was before the run wrote them, and gone for the rows the run inserted."""
    p = {"l": lot_id, "r": run_id, "e": entity}
    conn.execute(sa.text(
        "DELETE FROM crm_migration.written w USING crm_migration.pre_image p WHERE p.lot_id = :l AND p.run_id = :r"
        " AND p.entity = :e AND p.action = 'update' AND p.written_before = 'null'::jsonb AND w.entity = :e"
        " AND w.id = p.target_id"), p)
    conn.execute(sql("rollback/restore_written.sql"), p)
    conn.execute(sa.text(
        f"DELETE FROM crm_migration.written w WHERE w.entity = :e AND NOT EXISTS (SELECT 1 FROM {TARGET_TABLE[entity]}"
        " t WHERE t.id = w.id)"), p)


def rollback_run(url: str, lot_id: str, run_id: str, dry_run: bool = False, by: str = "manual",
                 cascade: bool = False) -> dict:
    """Undo one run, and with cascade the later runs that touched its rows (newest first), in one
    transaction; returns counts per run and entity.

    Refused with nothing changed: a run already rolled back (a replay after a newer run would revert
    it); a run later runs touched, without cascade; a cascade the dry run did not list as it is now.
    """
    validate_key(lot_id, run_id)
    with engine(url).connect() as conn:
        done = conn.execute(sa.text("SELECT rolled_back_by, rolled_back_at FROM crm_migration.rollback_log"
                                    " WHERE lot_id = :l AND run_id = :r"), {"l": lot_id, "r": run_id}).first()
    if done is not None:
        raise RollbackRefused(f"run {lot_id}/{run_id} was already rolled back by {done[0]} at {done[1]:%Y-%m-%d %H:%M}"
                              " UTC; replaying it would undo what later runs did. Nothing was changed.")
    if not plan(url, lot_id, run_id):
        raise ValueError(f"nothing to roll back: no pre-image for lot {lot_id!r} run {run_id!r}")
    with engine(url).connect() as conn:
        tx = conn.begin()
        later = later_runs(conn, lot_id, run_id)
        listed = [f"{lot2}/{run2}" for lot2, run2 in later]
        if later and not dry_run:
            planned = conn.execute(sa.text(
                "SELECT later FROM crm_migration.rollback_plan WHERE lot_id = :l AND run_id = :r"),
                {"l": lot_id, "r": run_id}).scalar()
            if not cascade:
                tx.rollback()
                raise RollbackRefused(
                    f"later runs touched rows of {lot_id}/{run_id}: {', '.join(listed)}. Rolling it back alone would"
                    " undo or orphan their changes. Dry-run it to see them, then roll back with cascade to take"
                    " them back too (newest first). Nothing was changed.")
            if planned != listed:
                tx.rollback()
                raise RollbackRefused(
                    f"a cascade takes back {', '.join(listed)}; the last dry run of {lot_id}/{run_id} listed"
                    f" {', '.join(planned or []) or 'nothing'}. Dry-run again, check the list, then cascade."
                    " Nothing was changed.")
        if later:
            log.warning("rollback of %s/%s takes back %d later runs first, newest first: %s", lot_id, run_id,
                        len(later), ", ".join(reversed(listed)))
        runs = []
        for lot2, run2 in [*reversed(later), (lot_id, run_id)]:
            runs.append({"lot_id": lot2, "run_id": run2, "entities": _rollback_one(conn, lot2, run2, by)})
        if dry_run:
            tx.rollback()
            with engine(url).begin() as rec:
                rec.execute(sa.text(
                    "INSERT INTO crm_migration.rollback_plan (lot_id, run_id, later) VALUES (:l, :r, CAST(:x AS jsonb))"
                    " ON CONFLICT (lot_id, run_id) DO UPDATE SET later = EXCLUDED.later, planned_at = now()"),
                    {"l": lot_id, "r": run_id, "x": json.dumps(listed)})
            log.info("dry run: rollback computed and undone, target untouched%s",
                     f"; a cascade would first take back {', '.join(reversed(listed))}" if later else "")
        else:
            tx.commit()
    return {"lot_id": lot_id, "run_id": run_id, "dry_run": dry_run, "entities": runs[-1]["entities"],
            "later_runs": listed, "runs": runs}
