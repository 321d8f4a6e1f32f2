"""Rollback of one run (a lot run or a delta run) from its pre-images.

Rows the run inserted are deleted, rows it updated or deleted are put back exactly as they were
(``row_before`` holds the whole target row), crosswalk entries it created are removed and the
watermark it moved is restored. Everything happens in one transaction, children before parents,
and it refuses to delete a company that records outside the run still point to.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from crm_migration.config import ENTITIES, validate_key
from crm_migration.db import engine
from crm_migration.transform import TARGET_COLUMNS, TARGET_TABLE

log = logging.getLogger(__name__)
TARGET_ALL_COLUMNS = {e: (*cols, "deleted_at", "migrated_lot_id", "migrated_first_run_id", "migrated_last_run_id",
                             "migrated_row_hash", "migrated_legacy_modified")
                      for e, cols in TARGET_COLUMNS.items()}
# children of each entity in the target model: (table, fk column)
CHILDREN = {
    "accounts": (("crm.people", "company_id"), ("crm.opportunities", "company_id")),
    "contacts": (("crm.opportunities", "person_id"),),
    "opportunities": (),
}


class RollbackRefused(RuntimeError):
    """Rolling back would orphan rows outside the run; roll those back first."""


# Rows a run inserted: first inserted by that run (the load keeps no pre-image for them), or
# recorded as 'insert' in the pre-image (a row the crosswalk knew as merged that became a survivor).
_INSERTED = """
    SELECT legacy_id FROM {table} WHERE migrated_lot_id = :l AND migrated_first_run_id = :r
    UNION
    SELECT legacy_id FROM crm_migration.pre_image WHERE lot_id = :l AND run_id = :r AND entity = :e
      AND action = 'insert'"""


def plan(url: str, lot_id: str, run_id: str) -> dict:
    """Rows to restore (pre-images) and to delete (inserted), per entity."""
    validate_key(lot_id, run_id)
    out: dict = {}
    with engine(url).connect() as conn:
        for entity in ENTITIES:
            p = {"l": lot_id, "r": run_id, "e": entity}
            inserted = conn.execute(sa.text(
                f"SELECT count(*) FROM ({_INSERTED.format(table=TARGET_TABLE[entity])}) i"), p).scalar_one()
            updated = conn.execute(sa.text(
                "SELECT count(*) FROM crm_migration.pre_image WHERE lot_id = :l AND run_id = :r AND entity = :e"
                " AND action = 'update'"), p).scalar_one()
            moved = conn.execute(sa.text(
                "SELECT count(*) FROM crm_migration.watermark_pre_image WHERE lot_id = :l AND run_id = :r"
                " AND entity = :e"), p).scalar_one()
            if inserted or updated or moved:
                out[entity] = {"insert": inserted, "update": updated}
    return out


def _check_children(conn: sa.Connection, lot_id: str, run_id: str, entity: str) -> None:
    for table, fk in CHILDREN[entity]:
        n = conn.execute(sa.text(
            f"SELECT count(*) FROM {table} c JOIN {TARGET_TABLE[entity]} t ON t.id = c.{fk}"
            f" WHERE t.legacy_id IN ({_INSERTED.format(table=TARGET_TABLE[entity])})"),
            {"e": entity, "l": lot_id, "r": run_id}).scalar_one()
        if n:
            raise RollbackRefused(
                f"{n} rows of {table} point to {entity} inserted by run {run_id}: roll back the runs that"
                f" loaded them first ({table}.migrated_first_run_id tells which)")


def rollback_run(url: str, lot_id: str, run_id: str, dry_run: bool = False, by: str = "manual") -> dict:
    """Undo one run in one transaction; returns counts per entity. A run already rolled back (and not
    loaded again since) is refused: replaying an old rollback after a newer run would revert it."""
    validate_key(lot_id, run_id)
    with engine(url).connect() as conn:
        done = conn.execute(sa.text("SELECT rolled_back_by, rolled_back_at FROM crm_migration.rollback_log"
                                    " WHERE lot_id = :l AND run_id = :r"), {"l": lot_id, "r": run_id}).first()
    if done is not None:
        raise RollbackRefused(f"run {lot_id}/{run_id} was already rolled back by {done[0]} at {done[1]:%Y-%m-%d %H:%M}"
                              " UTC; replaying it would undo what later runs did. Nothing was changed.")
    planned = plan(url, lot_id, run_id)
    if not planned:
        raise ValueError(f"nothing to roll back: no pre-image for lot {lot_id!r} run {run_id!r}")
    result: dict = {}
    with engine(url).connect() as conn:
        tx = conn.begin()
        p = {"l": lot_id, "r": run_id}
        for entity in reversed(ENTITIES):  # children first
            if entity not in planned:
                continue
            table, cols = TARGET_TABLE[entity], TARGET_ALL_COLUMNS[entity]
            _check_children(conn, lot_id, run_id, entity)
            col_list = ", ".join(cols)
            restored = conn.execute(sa.text(
                f"INSERT INTO {table} ({col_list})"
                f" SELECT {', '.join('b.' + c for c in cols)}"
                f" FROM crm_migration.pre_image p, jsonb_populate_record(NULL::{table}, p.row_before) b"
                " WHERE p.lot_id = :l AND p.run_id = :r AND p.entity = :e AND p.action = 'update'"
                f" ON CONFLICT (legacy_id) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "legacy_id")),
                {**p, "e": entity}).rowcount
            inserted = _INSERTED.format(table=table)
            deleted = conn.execute(sa.text(f"DELETE FROM {table} WHERE legacy_id IN ({inserted})"),
                                   {**p, "e": entity}).rowcount
            xw = conn.execute(sa.text(
                "DELETE FROM crm_migration.merged WHERE entity = :e AND lot_id = :l AND first_run_id = :r"),
                {**p, "e": entity}).rowcount
            conn.execute(sa.text(  # merged entries the run changed or turned into survivors come back
                "INSERT INTO crm_migration.merged AS x (entity, legacy_id, new_id, merged_into, lot_id, first_run_id,"
                " last_run_id) SELECT c.entity, c.legacy_id, c.new_id, c.merged_into, c.orig_lot_id, c.orig_first_run_id,"
                " c.last_run_id"
                " FROM crm_migration.crosswalk_pre_image c WHERE c.lot_id = :l AND c.run_id = :r AND c.entity = :e"
                " ON CONFLICT (entity, legacy_id) DO UPDATE SET new_id = EXCLUDED.new_id,"
                " merged_into = EXCLUDED.merged_into, last_run_id = EXCLUDED.last_run_id"), {**p, "e": entity})
            marks = conn.execute(sa.text(
                "SELECT scope, modified_at, had_watermark FROM crm_migration.watermark_pre_image"
                " WHERE lot_id = :l AND run_id = :r AND entity = :e"), {**p, "e": entity}).all()
            for scope, modified_at, had_watermark in marks:
                if had_watermark:
                    conn.execute(sa.text("UPDATE crm_migration.watermark SET modified_at = :m, run_id = :r,"
                                         " updated_at = now() WHERE entity = :e AND scope = :s"),
                                 {"m": modified_at, "r": f"rollback of {run_id}", "e": entity, "s": scope})
                else:
                    conn.execute(sa.text("DELETE FROM crm_migration.watermark WHERE entity = :e AND scope = :s"),
                                 {"e": entity, "s": scope})
            wm = marks or None
            # the run's fates go with it: its rows are unaccounted for until a run takes them again
            conn.execute(sa.text("DELETE FROM crm_migration.legacy_ledger WHERE entity = :e AND lot_id = :l"
                                 " AND run_id = :r"), {**p, "e": entity})
            result[entity] = {"restored": restored, "deleted": deleted, "crosswalk_removed": xw,
                              "watermark_restored": wm is not None}
            log.info("rollback %s of %s/%s: %d rows restored, %d inserted rows deleted, %d crosswalk rows removed",
                     entity, lot_id, run_id, restored, deleted, xw)
        conn.execute(sa.text("INSERT INTO crm_migration.rollback_log (lot_id, run_id, rolled_back_by)"
                             " VALUES (:l, :r, :b)"), {**p, "b": by})
        if dry_run:
            tx.rollback()
            log.info("dry run: rollback computed and undone, target untouched")
        else:
            tx.commit()
    return {"lot_id": lot_id, "run_id": run_id, "dry_run": dry_run, "entities": result}
