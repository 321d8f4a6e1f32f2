"""The load stage: a (lot, run) slice of transformed rows into the new CRM's table, in chunks of one upsert
statement each (include/sql/load/), newer wins on the legacy time clamped to the legacy clock at the read,
pre-images of every row it changes, the migration's record of what it wrote (crm_migration.written), edits
made in the new CRM settled by the entity's policy, late children re-linked; merged rows, fates and the
watermark once every chunk is in. One writer per entity (an advisory lock)."""

from __future__ import annotations

import json
import logging
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from collections.abc import Callable, Iterator

import sqlalchemy as sa

from crm_migration.model.config import EntityConfig, LotConfig, validate_key
from crm_migration.model.db import engine, set_wise, split_statements, sql, sql_text
from crm_migration.model.settings import load_migration_config
from crm_migration.stages.content import (CONTENT_COLUMNS, break_cycles, column_types, content_sql,
                                          record_missing_written_sql, relink)
from crm_migration.model.ddl import check_target, record_target_rows
from crm_migration.model.slices import Progress, timed
from crm_migration.stages.checksums import forget_id_sums
from crm_migration.rules.transform import MODIFIED_COLUMN, TARGET_COLUMNS, TARGET_TABLE

log = logging.getLogger(__name__)


def _chunk_bounds(conn: sa.Connection, entity: str, lot_id: str, run_id: str, size: int) -> list[tuple]:
    """(low, high] legacy-id ranges of at most size rows, in legacy-id order."""
    ids = [r[0] for r in conn.execute(sa.text(
        f"SELECT legacy_id FROM stg.{entity}_transform WHERE lot_id = :l AND run_id = :r ORDER BY legacy_id"),
        {"l": lot_id, "r": run_id})]
    bounds, low = [], ""
    for start in range(0, len(ids), size):
        high = ids[min(start + size, len(ids)) - 1]
        bounds.append((low, high, min(size, len(ids) - start)))
        low = high
    return bounds


def _chunk_sql(entity: str, types: dict[str, str] | None = None, merge_edits: bool = False) -> str:
    """The staged rows of one chunk (low < legacy_id <= high). merge_edits: a column the entity's edit
    policy keeps (crm_migration.edit_conflict of this run) takes the target row's value instead."""
    cols = (*TARGET_COLUMNS[entity], "row_hash", "links")
    where = (f"FROM stg.{entity}_transform s{{join}} WHERE s.lot_id = %(lot_id)s AND s.run_id = %(run_id)s"
             " AND s.legacy_id > %(low)s AND s.legacy_id <= %(high)s")
    version = version_sql(entity, "s") + " AS crm_version"
    if not merge_edits:
        return f"(SELECT {', '.join(f's.{c}' for c in cols)}, {version} {where.format(join='')})"
    keepable = set(CONTENT_COLUMNS[entity]) - {"legacy_id", MODIFIED_COLUMN[entity]}
    picked = [f"CASE WHEN k.id IS NOT NULL AND '{c}' = ANY(k.kept) THEN t.{c} ELSE CAST(s.{c} AS {types[c]}) END AS {c}"
              if c in keepable else f"s.{c}" for c in cols]
    # one index probe per row (LATERAL ... LIMIT 1): the slice was just written, its statistics are stale
    join = (" LEFT JOIN LATERAL (SELECT k0.id, k0.kept FROM crm_migration.edit_conflict k0 WHERE k0.lot_id = s.lot_id"
            f" AND k0.run_id = s.run_id AND k0.entity = '{entity}' AND k0.id = s.id LIMIT 1) k ON TRUE"
            f" LEFT JOIN LATERAL (SELECT t0.* FROM {TARGET_TABLE[entity]} t0 WHERE t0.id = s.id AND k.id IS NOT NULL"
            " LIMIT 1) t ON TRUE")
    return f"(SELECT {', '.join(picked)}, {version} {where.format(join=join)})"


def version_sql(entity: str, alias: str) -> str:
    """The version of a staged row the newer-wins rule compares: its legacy modification time, at most the
    legacy clock when its run read it (a future-dated row never outranks an edit made after that read)."""
    m = f"{alias}.{MODIFIED_COLUMN[entity]}"
    return (f"CASE WHEN {m} IS NULL THEN NULL ELSE LEAST({m}, (SELECT x.legacy_clock FROM crm_migration.extract_run x"
            f" WHERE x.lot_id = {alias}.lot_id AND x.run_id = {alias}.run_id AND x.entity = '{entity}')) END")


def upsert_sql(entity: str, chunk: str) -> str:
    """The upsert of one chunk into the entity's target table, generated from its column list."""
    cols = TARGET_COLUMNS[entity]
    values = [c for c in cols if c != "id"]
    return sql_text("load/upsert_target.sql", target=TARGET_TABLE[entity], chunk=chunk,
                    modified=MODIFIED_COLUMN[entity], columns=", ".join(cols),
                    source_columns=", ".join(f"s.{c}" for c in cols),
                    set_list=",\n    ".join(f"{c} = EXCLUDED.{c}" for c in values),
                    target_values=", ".join(f"t.{c}" for c in values),
                    excluded_values=", ".join(f"EXCLUDED.{c}" for c in values))


def _differs(entity: str, types: dict[str, str]) -> str:
    """A staged row (s) would change a content column of its target row (t): typed values compared."""
    cols = [c for c in CONTENT_COLUMNS[entity] if c != "legacy_id"]
    return (f"({', '.join(f't.{c}' for c in cols)}) IS DISTINCT FROM"
            f" ({', '.join(f'CAST(s.{c} AS {types[c]})' for c in cols)})")


def _edit_params(cfg: EntityConfig | None, entity: str) -> dict:
    """The edit policy's columns as the conflict SQL takes them."""
    columns = [c for c in CONTENT_COLUMNS[entity] if c not in ("legacy_id", MODIFIED_COLUMN[entity])]
    cfg = cfg if cfg is not None else EntityConfig()  # the defaults: flag
    return {"keepable": [c for c in columns if cfg.edit_policy(c) != "legacy_wins"],
            "flagged": [c for c in columns if cfg.edit_policy(c) == "flag"], "policy": cfg.on_target_edit}


def load_chunk(conn: sa.Connection, lot_id: str, run_id: str, entity: str, low: str, high: str,
               cfg: EntityConfig | None = None, types: dict[str, str] | None = None, unrecorded: bool = True) -> int:
    """Upsert the staged target rows with low < legacy_id <= high, their pre-image, what the load left in
    them and their crosswalk, straight from staging (same database: no copy of the rows in between).
    Rows edited in the new CRM since the migration wrote them are settled by the entity's edit policy
    (cfg.on_target_edit) first. unrecorded: the target may hold migrated rows with no record of what the
    migration wrote (loaded before it kept one; see _unrecorded). Returns the rows written (inserted or
    changed)."""
    table = TARGET_TABLE[entity]
    # PostgreSQL's JIT compiles the chunk's wide statements anew each time (~0.5 s a chunk, more than the
    # rows cost): off for this transaction
    conn.exec_driver_sql("SET LOCAL jit = off")
    types = types if types is not None else column_types(conn, entity)
    params = {"lot_id": lot_id, "run_id": run_id, "entity": entity, "low": low, "high": high,
              **_edit_params(cfg, entity)}
    merged = conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM crm_migration.merged WHERE entity = :e)"),
                          {"e": entity}).scalar()
    written_before = conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM crm_migration.written WHERE entity = :e)"),
                                  {"e": entity}).scalar()
    if written_before:  # edits made in the new CRM, decided before anything is written
        conn.exec_driver_sql(sql_text("load/edit_conflict.sql", staged=f"stg.{entity}_transform", target=table,
                                      content=content_sql(entity, types, "t"), differs=_differs(entity, types)),
                             params)
    chunk = _chunk_sql(entity, types, merge_edits=written_before)
    if merged:  # rows the crosswalk knew as merged that survive now (none on a first load)
        for stmt in split_statements(sql_text("load/save_pre_image.sql", chunk=chunk, target=table)):
            conn.exec_driver_sql(stmt, params)
    written = conn.exec_driver_sql(sql_text(
        "load/write_chunk.sql", upsert=upsert_sql(entity, chunk).rstrip().rstrip(";"), target=table,
        staged=f"stg.{entity}_transform", content=content_sql(entity, types, "up")), params).scalar_one()
    if unrecorded:  # rows the upsert left alone that have no record yet (loaded before the migration kept one)
        conn.exec_driver_sql(record_missing_written_sql(entity, types, chunk), params)
    if merged:
        for stmt in split_statements(sql_text("load/upsert_crosswalk.sql", chunk=chunk, target=table)):
            conn.exec_driver_sql(stmt, params)
    return written


def _unrecorded(conn: sa.Connection, entity: str) -> bool:
    """The target holds a migrated row with no record of what the migration wrote in it (loaded before the
    migration kept one): each chunk then records what such rows hold. Asked once per load, not per chunk
    (the per-chunk look-up cost a rerun a third of its time)."""
    return bool(conn.execute(sa.text(
        f"SELECT EXISTS (SELECT 1 FROM {TARGET_TABLE[entity]} t WHERE t.migrated_lot_id IS NOT NULL AND NOT EXISTS"
        " (SELECT 1 FROM crm_migration.written w WHERE w.entity = :e AND w.id = t.id))"), {"e": entity}).scalar())


def finish_load(conn: sa.Connection, lot_id: str, run_id: str, entity: str, advance_watermark: bool) -> dict:
    """After all chunks: crosswalk entries of merged rows, the ledger of the rows excluded or
    quarantined, the staged rows the target held in a newer version, and (full and delta runs) the
    watermark of every scope the extract covered."""
    params = {"lot_id": lot_id, "run_id": run_id, "entity": entity}
    staged, target = f"stg.{entity}_transform", TARGET_TABLE[entity]
    for stmt in split_statements(sql_text("load/crosswalk_merged.sql", target=target)):
        conn.exec_driver_sql(stmt, params)
    with set_wise(conn):
        for stmt in split_statements(sql_text("load/record_ledger.sql", staged=staged)):
            conn.exec_driver_sql(stmt, params)
        rejected_older = conn.exec_driver_sql(sql_text("load/count_older.sql", staged=staged, target=target,
                                                       modified=MODIFIED_COLUMN[entity]), params).scalar_one()
    if rejected_older:
        log.warning("load %s: %d staged rows not applied: the target holds a newer legacy version of them",
                    entity, rejected_older)
    scopes = []
    if advance_watermark:
        windows = conn.execute(sa.text("SELECT windows FROM crm_migration.extract_run WHERE lot_id = :l"
                                       " AND run_id = :r AND entity = :e"),
                               {"l": lot_id, "r": run_id, "e": entity}).scalar()
        scopes = sorted(windows or {})
        margin = load_migration_config().watermark_margin_minutes * 60
        for stmt in split_statements(sql_text("load/advance_watermark.sql")):
            conn.exec_driver_sql(stmt, {**params, "scopes": scopes, "margin_seconds": margin})
    marks = dict(conn.execute(sa.text("SELECT scope, modified_at FROM crm_migration.watermark WHERE entity = :e"
                                      " AND scope = ANY(:s)"), {"e": entity, "s": scopes}).all())
    break_cycles(conn, entity, lot_id, run_id)  # a hierarchy's cycle cut (crm_migration.link_cut), then the relink
    relinked = relink(conn, entity, lot_id, run_id)  # children that arrived before these rows point at them now
    conn.execute(sql("load/record_outcome.sql"),  # relinked: merged, a rerun finds none to relink
                 {"l": lot_id, "r": run_id, "e": entity, "n": rejected_older, "k": json.dumps(relinked)})
    # written by this run, whichever attempt: rows it inserted and rows it changed (their pre-images)
    written = conn.execute(sa.text(
        f"SELECT count(*) FROM (SELECT legacy_id FROM {target} WHERE migrated_lot_id = :l"
        " AND migrated_first_run_id = :r"
        " UNION SELECT legacy_id FROM crm_migration.pre_image WHERE lot_id = :l AND run_id = :r AND entity = :e) w"),
        {"l": lot_id, "r": run_id, "e": entity}).scalar_one()
    record_target_rows(conn, entity, lot_id, run_id)
    return {"watermarks": {k: v.isoformat() for k, v in marks.items()}, "rejected_older": rejected_older,
            "written": written, "relinked": relinked}


@contextmanager
def entity_write_lock(url: str, entity: str) -> Iterator[None]:
    """One writer per entity: a lot load and a delta load of the same entity never interleave.

    A session-level advisory lock on a connection of its own, held for the whole load (every chunk
    transaction); the server releases it if the process dies.
    """
    key = zlib.crc32(f"crm-cutover:load:{entity}".encode())
    with engine(url).connect() as conn:
        if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            log.info("load %s: waiting for another load of %s (lot or delta) to finish", entity, entity)
            t0 = time.perf_counter()
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            log.info("load %s: lock obtained after %.1f s", entity, time.perf_counter() - t0)
        conn.commit()
        try:
            yield
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            except sa.exc.DBAPIError:
                conn.invalidate()  # the session is gone, and its lock with it


def _finish(conn: sa.Connection, out: dict, lot_id: str, run_id: str, entity: str, advance_watermark: bool,
            before_finish: Callable[[sa.Connection], dict] | None) -> None:
    forget_id_sums(conn, entity)  # the target changed: a delta's before_finish keeps the checksums it read
    if before_finish is not None:
        out.update(before_finish(conn))
    out.update(finish_load(conn, lot_id, run_id, entity, advance_watermark))


def run_load(url: str, lot: LotConfig, entity: str, run_id: str, dry_run: bool = False,
             advance_watermark: bool = False, single_transaction: bool = False,
             before_finish: Callable[[sa.Connection], dict] | None = None) -> dict:
    """Upsert the target slice into the CRM, then crosswalk the merged rows (and the watermark).

    Lot runs commit one chunk at a time, ``load_workers`` chunks at once (a kill loses at most the
    chunks in flight; a rerun redoes every chunk idempotently). The delta sync loads in one
    transaction, with its deletions (``before_finish``) and the watermark inside it: the watermark
    moves only with the rows it covers. Either holds the entity's write lock throughout.
    """
    validate_key(lot.lot_id, run_id)
    if dry_run:
        log.info("dry run: load of %s skipped, target untouched", entity)
        return {"entity": entity, "loaded": 0, "dry_run": True}
    out: dict = {"entity": entity, "loaded": 0, "dry_run": False}
    with engine(url).connect() as conn:  # a target table the team does not own must have every mapped column
        check_target(conn, entity)
    with timed(url, lot.lot_id, run_id, entity, "load") as st, entity_write_lock(url, entity):
        with engine(url).begin() as conn:  # applied again after a rollback: it may be rolled back again
            conn.execute(sa.text("DELETE FROM crm_migration.rollback_log WHERE lot_id = :l AND run_id = :r"),
                         {"l": lot.lot_id, "r": run_id})
            conn.execute(sa.text("INSERT INTO crm_migration.applied_run (lot_id, run_id) VALUES (:l, :r)"
                                 " ON CONFLICT (lot_id, run_id) DO NOTHING"), {"l": lot.lot_id, "r": run_id})
        with engine(url).connect() as conn:
            bounds = _chunk_bounds(conn, entity, lot.lot_id, run_id, lot.load_chunk_rows)
            types = column_types(conn, entity)
            unrecorded = _unrecorded(conn, entity)
        total, seen, cfg = sum(n for _, _, n in bounds), 0, lot.entities.get(entity)
        progress = Progress(f"load {entity}", total)
        if single_transaction:
            with engine(url).begin() as conn:
                for low, high, n in bounds:
                    load_chunk(conn, lot.lot_id, run_id, entity, low, high, cfg, types, unrecorded)
                    out["loaded"] += n
                    progress.add(n)
                _finish(conn, out, lot.lot_id, run_id, entity, advance_watermark, before_finish)
        else:
            def one_chunk(bound: tuple) -> tuple[int, int]:
                with engine(url).begin() as conn:  # one transaction per chunk; chunks are disjoint key ranges
                    return bound[2], load_chunk(conn, lot.lot_id, run_id, entity, bound[0], bound[1], cfg, types,
                                                unrecorded)

            with ThreadPoolExecutor(max_workers=lot.load_workers) as pool:
                for n, written in pool.map(one_chunk, bounds):
                    out["loaded"], seen = out["loaded"] + n, seen + written
                    progress.add(n)
            with engine(url).begin() as conn:
                _finish(conn, out, lot.lot_id, run_id, entity, advance_watermark, before_finish)
        out["unchanged"] = total - out["written"] - out["rejected_older"]
        log.info("load %s: %d staged rows: %d written by this run (inserted or changed), %d already as staged"
                 " (not rewritten), %d older than the target's (not applied); %s", entity, total, out["written"],
                 max(out["unchanged"], 0), out["rejected_older"],
                 f"relinked {out['relinked']}" if out.get("relinked") else "no child waited for these rows")
        st["rows_in"], st["rows_out"] = total, out["written"]
    return out
