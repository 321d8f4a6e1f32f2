"""The five stages against the databases, each rewriting only its own (lot, run) slice.

Each ``run_<stage>`` reads the previous stage's slice, applies the plain functions of
cleanse/dedupe/transform, writes its slice in one transaction and records its timing.
It returns small JSON-safe metadata (counts) for XCom and the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterator

import sqlalchemy as sa

from crm_migration.cleanse import CLEAN_COLUMNS, cleanse_rows
from crm_migration.config import EntityConfig, LotConfig, validate_key
from crm_migration.db import engine, replace_slice, sql_text
from crm_migration.dedupe import dedupe_rows
from crm_migration.transform import FOREIGN_KEYS, TARGET_COLUMNS, TARGET_TABLE, transform_rows

log = logging.getLogger(__name__)


def _json_value(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, str) and "\x00" in v:  # PostgreSQL text/jsonb cannot hold NUL
        return v.replace("\x00", "\ufffd")
    return v


def json_row(row: dict) -> str:
    return json.dumps({k: _json_value(v) for k, v in row.items()}, ensure_ascii=False, sort_keys=True, default=str)


def in_sample(legacy_id: Any, fraction: float) -> bool:
    """Deterministic sample: the same ids are picked on every run for a given fraction."""
    if fraction >= 1.0:
        return True
    return zlib.crc32(str(legacy_id).encode()) % 1_000_000 < fraction * 1_000_000


@contextmanager
def timed(url: str, lot_id: str, run_id: str, entity: str, stage: str) -> Iterator[dict]:
    """Time a stage; the body fills stats['rows_in'] and stats['rows_out']."""
    stats: dict = {"rows_in": None, "rows_out": None}
    t0 = time.perf_counter()
    yield stats
    seconds = round(time.perf_counter() - t0, 3)
    stats["seconds"] = seconds
    with engine(url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO crm_migration.stage_timing (lot_id, run_id, entity, stage, rows_in, rows_out, seconds)"
                " VALUES (:l, :r, :e, :s, :i, :o, :sec) ON CONFLICT (lot_id, run_id, entity, stage) DO UPDATE"
                " SET rows_in = EXCLUDED.rows_in, rows_out = EXCLUDED.rows_out, seconds = EXCLUDED.seconds,"
                " finished_at = now()"
            ),
            {"l": lot_id, "r": run_id, "e": entity, "s": stage, "i": stats["rows_in"], "o": stats["rows_out"],
             "sec": seconds},
        )
    log.info("%s %s: %s rows in, %s rows out, %.2f s", stage, entity, stats["rows_in"], stats["rows_out"], seconds)


def _read_slice(conn: sa.Connection, table: str, columns: tuple[str, ...], lot_id: str, run_id: str,
                extra: str = "") -> list[dict]:
    res = conn.execute(
        sa.text(f"SELECT {', '.join(columns)} FROM {table} WHERE lot_id = :l AND run_id = :r {extra}"
                " ORDER BY legacy_id"),
        {"l": lot_id, "r": run_id},
    )
    return [dict(m) for m in res.mappings()]


def _write_quarantine(conn: sa.Connection, lot_id: str, run_id: str, entity: str, stage: str,
                      rows: list[tuple[Any, str, str, dict]]) -> int:
    return replace_slice(
        conn, "stg.quarantine", {"lot_id": lot_id, "run_id": run_id, "entity": entity, "stage": stage},
        ("legacy_id", "reason_code", "detail", "raw_row"),
        ((None if lid is None else str(lid), code, detail, json_row(raw)) for lid, code, detail, raw in rows),
    )


def quarantined_ids(url: str, lot_id: str, entity: str, run_id: str, source_run_id: str | None) -> tuple[str, set]:
    """Legacy ids quarantined by source_run_id (default: the lot's latest other run with a report)."""
    with engine(url).connect() as conn:
        if not source_run_id:
            source_run_id = conn.execute(sa.text(
                "SELECT run_id FROM crm_migration.run_report WHERE lot_id = :l AND run_id <> :r"
                " ORDER BY created_at DESC LIMIT 1"), {"l": lot_id, "r": run_id}).scalar()
            if source_run_id is None:
                raise ValueError(f"only_quarantined: lot {lot_id} has no earlier run with a report")
        validate_key(lot_id, source_run_id)
        ids = {r[0] for r in conn.execute(sa.text(
            "SELECT DISTINCT legacy_id FROM stg.quarantine WHERE lot_id = :l AND run_id = :s AND entity = :e"
            " AND legacy_id IS NOT NULL"), {"l": lot_id, "s": source_run_id, "e": entity})}
    return source_run_id, ids


EXTRACT_ALIAS = {"accounts": "a", "contacts": "c", "opportunities": "o"}


def run_extract(legacy_url: str, url: str, lot: LotConfig, entity: str, run_id: str,
                sample_fraction: float = 1.0, only_ids: set[str] | None = None,
                modified_since: datetime | None = None) -> dict:
    """Legacy rows into stg.raw; only_ids restricts to those legacy ids (a quarantine rerun),
    modified_since to rows changed after it (the delta sync)."""
    validate_key(lot.lot_id, run_id)
    cfg = lot.entities[entity]
    with timed(url, lot.lot_id, run_id, entity, "extract") as st:
        delta = f"{EXTRACT_ALIAS[entity]}.date_modified > :since" if modified_since else "1=1"
        query = sql_text(f"extract/select_{entity}.sql", source_filter=cfg.source_filter, delta_filter=delta)
        # the legacy CRM stores naive UTC timestamps
        binds = {"since": modified_since.astimezone(timezone.utc).replace(tzinfo=None)} if modified_since else {}
        rows_in, out, max_modified = 0, [], None
        with engine(legacy_url).connect() as src:
            result = src.execution_options(stream_results=True, yield_per=10_000).execute(sa.text(query), binds)
            for m in result.mappings():
                rows_in += 1
                row = dict(m)
                if not in_sample(row.get("id"), sample_fraction):
                    continue
                if only_ids is not None and str(row.get("id")) not in only_ids:
                    continue
                data = json_row(row)
                legacy_id = row.get("id")
                if row.get("date_modified") and (max_modified is None or row["date_modified"] > max_modified):
                    max_modified = row["date_modified"]
                out.append((None if legacy_id is None else str(legacy_id),
                            hashlib.md5(data.encode()).hexdigest(), data))
        with engine(url).begin() as conn:
            n = replace_slice(conn, "stg.raw", {"lot_id": lot.lot_id, "run_id": run_id, "entity": entity},
                              ("legacy_id", "row_hash", "data"), out)
        st["rows_in"], st["rows_out"] = rows_in, n
    return {"entity": entity, "legacy_rows": rows_in, "extracted": n,
            "max_modified": max_modified.isoformat() if max_modified else None}


def run_cleanse(url: str, lot: LotConfig, entity: str, run_id: str) -> dict:
    validate_key(lot.lot_id, run_id)
    cfg = lot.entities[entity]
    key = {"lot_id": lot.lot_id, "run_id": run_id}
    with timed(url, lot.lot_id, run_id, entity, "cleanse") as st:
        with engine(url).connect() as conn:
            raws = [r[0] for r in conn.execute(
                sa.text("SELECT data FROM stg.raw WHERE lot_id = :l AND run_id = :r AND entity = :e"
                        " ORDER BY legacy_id"), {"l": lot.lot_id, "r": run_id, "e": entity})]
        res = cleanse_rows(entity, raws, cfg)
        cols = CLEAN_COLUMNS[entity]
        with engine(url).begin() as conn:
            replace_slice(conn, f"stg.{entity}_clean", key, cols, ([r[c] for c in cols] for r in res.clean))
            replace_slice(conn, "stg.excluded", {**key, "entity": entity}, ("legacy_id", "rule", "raw_row"),
                          ((lid, rule, json_row(raw)) for lid, rule, raw in res.excluded))
            _write_quarantine(conn, lot.lot_id, run_id, entity, "cleanse", res.quarantined)
        st["rows_in"], st["rows_out"] = len(raws), len(res.clean)
    return {"entity": entity, "clean": len(res.clean), "excluded": len(res.excluded),
            "quarantined": len(res.quarantined)}


def run_dedupe(url: str, lot: LotConfig, entity: str, run_id: str) -> dict:
    validate_key(lot.lot_id, run_id)
    cfg = lot.entities[entity]
    key = {"lot_id": lot.lot_id, "run_id": run_id}
    cols = CLEAN_COLUMNS[entity]
    with timed(url, lot.lot_id, run_id, entity, "dedupe") as st:
        with engine(url).connect() as conn:
            rows = _read_slice(conn, f"stg.{entity}_clean", cols, lot.lot_id, run_id)
        res = dedupe_rows(entity, rows, cfg.dedupe)
        with engine(url).begin() as conn:
            replace_slice(conn, f"stg.{entity}_dedup", key, cols, ([r[c] for c in cols] for r in res.survivors))
            replace_slice(conn, "stg.merge_map", {**key, "entity": entity},
                          ("legacy_id", "survivor_legacy_id", "score", "rule"), res.merges)
            replace_slice(conn, "stg.review_pair", {**key, "entity": entity},
                          ("legacy_id_a", "legacy_id_b", "score", "agreeing"), res.review)
        st["rows_in"], st["rows_out"] = len(rows), len(res.survivors)
    merged = len(rows) - len(res.survivors)
    log.info("dedupe %s: %d pairs compared (n^2/2 = %d), %d merged, %d pairs to review,"
             " %d oversized clusters left unmerged", entity, res.pairs_compared, len(rows) * (len(rows) - 1) // 2,
             merged, len(res.review), res.oversized_clusters)
    return {"entity": entity, "survivors": len(res.survivors), "merged": merged, "review_pairs": len(res.review),
            "pairs_compared": res.pairs_compared}


def _crosswalk(conn: sa.Connection, parents: set[str]) -> dict[str, dict]:
    xw: dict[str, dict] = {p: {} for p in parents}
    if parents:
        res = conn.execute(sa.text("SELECT entity, legacy_id, new_id FROM crm_migration.crosswalk"
                                   " WHERE entity = ANY(:p)"), {"p": sorted(parents)})
        for entity, legacy_id, new_id in res:
            xw[entity][legacy_id] = new_id
    return xw


def _explain_orphans(url: str, entity: str, quarantined: list[tuple]) -> list[tuple]:
    """FK_ORPHAN details say what became of the parent, when it was seen: excluded by a rule, or
    quarantined with a reason (the person on call then knows whether to fix data or config)."""
    wanted = {(parent, r[col]) for _, code, _, r in quarantined if code == "FK_ORPHAN"
              for col, parent, _ in FOREIGN_KEYS[entity] if r.get(col)}
    if not wanted:
        return quarantined
    fate: dict[tuple, str] = {}
    with engine(url).connect() as conn:
        for parent in {p for p, _ in wanted}:
            ids = [i for p, i in wanted if p == parent]
            for lid, why in conn.execute(sa.text(
                    "SELECT legacy_id, 'excluded by rule ' || rule || ' in lot ' || lot_id FROM stg.excluded"
                    " WHERE entity = :e AND legacy_id = ANY(:ids) UNION ALL"
                    " SELECT legacy_id, 'quarantined (' || reason_code || ') in lot ' || lot_id FROM stg.quarantine"
                    " WHERE entity = :e AND legacy_id = ANY(:ids)"), {"e": parent, "ids": ids}):
                fate[(parent, lid)] = why
    out = []
    for lid, code, detail, row in quarantined:
        if code == "FK_ORPHAN":
            notes = [f"{parent} {row[col]} was {fate[(parent, row[col])]}" for col, parent, _ in FOREIGN_KEYS[entity]
                     if (parent, row.get(col)) in fate]
            fallback = "the parent was not seen by any lot run (missing from the legacy CRM, or outside the filters)"
            detail = f"{detail}; {'; '.join(notes) if notes else fallback}"
        out.append((lid, code, detail, row))
    return out


def run_transform(url: str, lot: LotConfig, entity: str, run_id: str) -> dict:
    validate_key(lot.lot_id, run_id)
    cfg: EntityConfig = lot.entities[entity]
    key = {"lot_id": lot.lot_id, "run_id": run_id}
    with timed(url, lot.lot_id, run_id, entity, "transform") as st:
        with engine(url).connect() as conn:
            rows = _read_slice(conn, f"stg.{entity}_dedup", CLEAN_COLUMNS[entity], lot.lot_id, run_id)
            crosswalk = _crosswalk(conn, {parent for _, parent, _ in FOREIGN_KEYS[entity]})
        res = transform_rows(entity, rows, cfg, crosswalk)
        res.quarantined = _explain_orphans(url, entity, res.quarantined)
        cols = TARGET_COLUMNS[entity]
        with engine(url).begin() as conn:
            replace_slice(conn, f"stg.{entity}_target", key, cols, ([r[c] for c in cols] for r in res.rows))
            _write_quarantine(conn, lot.lot_id, run_id, entity, "transform", res.quarantined)
        st["rows_in"], st["rows_out"] = len(rows), len(res.rows)
    return {"entity": entity, "target_rows": len(res.rows), "quarantined": len(res.quarantined)}


def _split_statements(sql: str) -> list[str]:
    return [s for s in sql.split(";\n") if s.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in s.splitlines())]


def _chunk_bounds(conn: sa.Connection, entity: str, lot_id: str, run_id: str, size: int) -> list[tuple]:
    """(low, high] legacy-id ranges of at most size rows, in legacy-id order."""
    ids = [r[0] for r in conn.execute(sa.text(
        f"SELECT legacy_id FROM stg.{entity}_target WHERE lot_id = :l AND run_id = :r ORDER BY legacy_id"),
        {"l": lot_id, "r": run_id})]
    bounds, low = [], ""
    for start in range(0, len(ids), size):
        high = ids[min(start + size, len(ids)) - 1]
        bounds.append((low, high, min(size, len(ids) - start)))
        low = high
    return bounds


def load_chunk(conn: sa.Connection, lot_id: str, run_id: str, entity: str, low: str, high: str) -> None:
    """Upsert the staged target rows with low < legacy_id <= high, their pre-image and crosswalk,
    straight from staging (same database: no copy of the rows in between)."""
    table, cols = TARGET_TABLE[entity], ", ".join(TARGET_COLUMNS[entity])
    params = {"lot_id": lot_id, "run_id": run_id, "entity": entity, "low": low, "high": high}
    chunk = (f"(SELECT {cols} FROM stg.{entity}_target WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s"
             " AND legacy_id > %(low)s AND legacy_id <= %(high)s)")
    pre_image, crosswalk = (_split_statements(sql_text(f, chunk=chunk, target=table))
                            for f in ("load/save_pre_image.sql", "load/upsert_crosswalk.sql"))
    if not conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM crm_migration.merged WHERE entity = :e)"),
                        {"e": entity}).scalar():
        pre_image, crosswalk = pre_image[:1], []  # no merged rows yet (a first load): nothing to look up
    upsert = _split_statements(sql_text(f"load/upsert_{table.split('.')[1]}.sql", chunk=chunk))
    for stmt in pre_image + upsert + crosswalk:
        conn.exec_driver_sql(stmt, params)


def finish_load(conn: sa.Connection, lot_id: str, run_id: str, entity: str, advance_watermark: bool) -> dict:
    """After all chunks: crosswalk entries of merged rows, then (full and delta runs) the watermark."""
    params = {"lot_id": lot_id, "run_id": run_id, "entity": entity}
    statements = _split_statements(sql_text("load/crosswalk_merged.sql", target=TARGET_TABLE[entity]))
    if advance_watermark:
        statements += _split_statements(sql_text("load/advance_watermark.sql"))
    for stmt in statements:
        conn.exec_driver_sql(stmt, params)
    wm = conn.execute(sa.text("SELECT modified_at FROM crm_migration.watermark WHERE entity = :e"),
                      {"e": entity}).scalar()
    return {"watermark": wm.isoformat() if wm else None}


def _finish(conn: sa.Connection, out: dict, lot_id: str, run_id: str, entity: str, advance_watermark: bool,
            before_finish: Callable[[sa.Connection], dict] | None) -> None:
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
    moves only with the rows it covers.
    """
    validate_key(lot.lot_id, run_id)
    if dry_run:
        log.info("dry run: load of %s skipped, target untouched", entity)
        return {"entity": entity, "loaded": 0, "dry_run": True}
    out: dict = {"entity": entity, "loaded": 0, "dry_run": False}
    with timed(url, lot.lot_id, run_id, entity, "load") as st:
        with engine(url).connect() as conn:
            bounds = _chunk_bounds(conn, entity, lot.lot_id, run_id, lot.load_chunk_rows)
        total = sum(n for _, _, n in bounds)
        if single_transaction:
            with engine(url).begin() as conn:
                for low, high, n in bounds:
                    load_chunk(conn, lot.lot_id, run_id, entity, low, high)
                    out["loaded"] += n
                _finish(conn, out, lot.lot_id, run_id, entity, advance_watermark, before_finish)
        else:
            def one_chunk(bound: tuple) -> int:
                with engine(url).begin() as conn:  # one transaction per chunk; chunks are disjoint key ranges
                    load_chunk(conn, lot.lot_id, run_id, entity, bound[0], bound[1])
                return bound[2]

            with ThreadPoolExecutor(max_workers=lot.load_workers) as pool:
                for n in pool.map(one_chunk, bounds):
                    out["loaded"] += n
                    log.info("load %s: %d / %d rows", entity, out["loaded"], total)
            with engine(url).begin() as conn:
                _finish(conn, out, lot.lot_id, run_id, entity, advance_watermark, before_finish)
        st["rows_in"], st["rows_out"] = total, out["loaded"]
    return out


def reconcile_load(url: str, lot: LotConfig, entity: str, run_id: str) -> dict:
    """After load: every staged target row is in the CRM with the same id."""
    table = TARGET_TABLE[entity]
    with engine(url).connect() as conn:
        staged, present = conn.execute(sa.text(
            f"SELECT count(*), count(t.id) FROM stg.{entity}_target s LEFT JOIN {table} t"
            " ON t.legacy_id = s.legacy_id AND t.id = s.id WHERE s.lot_id = :l AND s.run_id = :r"),
            {"l": lot.lot_id, "r": run_id}).one()
    return {"entity": entity, "staged": staged, "present_in_target": present, "ok": staged == present}
