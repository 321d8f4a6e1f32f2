"""Delta sync for the cutover: what changed in the legacy CRM since the last load.

Per entity, a watermark (crm_migration.watermark) holds the newest legacy ``date_modified``
migrated. A delta run extracts rows modified after (watermark - overlap), runs them through
the same cleanse/transform rules, dedupes *new* rows against the records already migrated,
upserts, applies deletions (soft-deleted rows, and rows gone from the legacy CRM), and advances
the watermark in the same transaction as the load. A row changed while the run is going has a
newer date_modified than anything extracted, so the next run picks it up.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from crm_migration.cleanse import CLEAN_COLUMNS
from crm_migration.config import LotConfig, entity_scopes, load_lots, load_migration_config, validate_key
from crm_migration.db import engine, replace_slice
from crm_migration.dedupe import dedupe_rows
from crm_migration.stages import _read_slice, run_load, timed
from crm_migration.transform import TARGET_TABLE

log = logging.getLogger(__name__)
DELTA_LOT_ID = "delta"
LEGACY_TABLE = {"accounts": "accounts", "contacts": "contacts", "opportunities": "opportunities"}


class LeftBehind(RuntimeError):
    """Freeze mode: something was not migrated by the final run."""


def delta_lot(entities: list[str] | None = None) -> LotConfig:
    """One pseudo-lot holding each entity's rules from the lot that owns it."""
    owned = {}
    for lot in load_lots():
        for entity, cfg in lot.entities.items():
            owned.setdefault(entity, cfg)
    chosen = {e: c for e, c in owned.items() if not entities or e in entities}
    if not chosen:
        raise ValueError(f"no lot migrates any of {entities}")
    return LotConfig(lot_id=DELTA_LOT_ID, description="delta sync", entities=chosen, load_chunk_rows=50_000)


def read_watermarks(url: str, entity: str) -> dict[str, datetime]:
    """scope -> watermark of an entity."""
    with engine(url).connect() as conn:
        return dict(conn.execute(sa.text("SELECT scope, modified_at FROM crm_migration.watermark WHERE entity = :e"),
                                 {"e": entity}).all())


def windows(url: str, entity: str, overlap_minutes: float) -> dict[str, tuple[str, datetime]]:
    """scope -> (source_filter, window start) for every loaded scope of the entity: the delta covers
    the union of the lots' scopes, each from its own watermark minus the overlap (never less than the
    configured minimum). A scope whose lot has not loaded yet is left to that lot."""
    overlap = max(float(overlap_minutes), load_migration_config().min_overlap_minutes)
    marks = read_watermarks(url, entity)
    scopes = entity_scopes(entity)
    out = {s: (f, marks[s] - timedelta(minutes=overlap)) for s, f in scopes.items() if s in marks}
    if not out:
        raise ValueError(f"no watermark for {entity}: load its lot (crm_lot_*) before the delta sync")
    for scope in sorted(set(scopes) - set(marks)):
        log.info("delta %s: lot %s has not loaded yet: its rows come with it, not with the delta", entity, scope)
    return out


# --- dedupe new rows against the records already migrated ----------------------------------------

_CANDIDATES = {
    "contacts": """
        SELECT p.legacy_id, p.first_name, p.last_name, p.email, p.phone, x.legacy_id AS account_legacy_id,
               p.updated_at AS modified_at
        FROM crm.people p
        LEFT JOIN crm_migration.crosswalk x ON x.entity = 'accounts' AND x.new_id = p.company_id
                                           AND x.merged_into IS NULL
        WHERE p.deleted_at IS NULL AND p.legacy_id <> ALL(:ids)
          AND (p.email = ANY(:keys) OR lower(p.last_name) = ANY(:names))""",
    "accounts": """
        SELECT c.legacy_id, c.name, c.domain, c.address_postal_code AS postal_code, c.address_city AS city,
               c.phone, c.address_country AS country_code, c.updated_at AS modified_at
        FROM crm.companies c
        WHERE c.deleted_at IS NULL AND c.legacy_id <> ALL(:ids)
          AND (c.domain = ANY(:keys) OR lower(split_part(c.name, ' ', 1)) = ANY(:names))""",
    "opportunities": """
        SELECT o.legacy_id, o.name, o.amount, o.close_date, x.legacy_id AS account_legacy_id,
               o.updated_at AS modified_at
        FROM crm.opportunities o
        LEFT JOIN crm_migration.crosswalk x ON x.entity = 'accounts' AND x.new_id = o.company_id
                                           AND x.merged_into IS NULL
        WHERE o.deleted_at IS NULL AND o.legacy_id <> ALL(:ids)
          AND (x.legacy_id = ANY(:keys) OR lower(split_part(o.name, ' ', 1)) = ANY(:names))""",
}


def _candidate_keys(entity: str, rows: list[dict]) -> tuple[list[str], list[str]]:
    """(exact keys, lower-case name keys) of new rows: e-mails / domains / account ids, and names."""
    if entity == "opportunities":
        return ([r["account_legacy_id"] for r in rows if r.get("account_legacy_id")],
                sorted({(r.get("name") or "").split(" ")[0].lower() for r in rows} - {""}))
    if entity == "contacts":
        return ([r["email"] for r in rows if r.get("email")],
                sorted({(r.get("last_name") or "").lower() for r in rows} - {""}))
    return ([r["domain"] for r in rows if r.get("domain")],
            sorted({(r.get("name") or "").split(" ")[0].lower() for r in rows} - {""}))


def run_dedupe_delta(url: str, lot: LotConfig, entity: str, run_id: str) -> dict:
    """Changed rows already migrated stay themselves (updates); new rows are deduped among
    themselves and against migrated records fetched by blocking keys (merged into them)."""
    validate_key(lot.lot_id, run_id)
    cfg = lot.entities[entity]
    cols = CLEAN_COLUMNS[entity]
    key = {"lot_id": lot.lot_id, "run_id": run_id}
    with timed(url, lot.lot_id, run_id, entity, "dedupe") as st:
        with engine(url).connect() as conn:
            rows = _read_slice(conn, f"stg.{entity}_clean", cols, lot.lot_id, run_id)
            ids = [r["legacy_id"] for r in rows]
            known = {lid: merged for lid, merged in conn.execute(sa.text(
                "SELECT legacy_id, merged_into FROM crm_migration.crosswalk WHERE entity = :e"
                " AND legacy_id = ANY(:ids)"), {"e": entity, "ids": ids})}
            new_rows = [r for r in rows if r["legacy_id"] not in known]
            keys, names = _candidate_keys(entity, new_rows)
            candidates = [dict(m) for m in conn.execute(sa.text(_CANDIDATES[entity]),
                                                        {"ids": ids, "keys": keys, "names": names}).mappings()
                          ] if new_rows else []
        updates = [r for r in rows if r["legacy_id"] in known and known[r["legacy_id"]] is None]
        merges = [(r["legacy_id"], r["legacy_id"], 1.0, "self") for r in updates]
        merges += [(lid, survivor, 1.0, "merged_earlier") for lid, survivor in known.items() if survivor]
        fixed = frozenset(c["legacy_id"] for c in candidates)
        res = dedupe_rows(entity, new_rows + candidates, cfg.dedupe, fixed=fixed)
        survivors = updates + [s for s in res.survivors if s["legacy_id"] not in fixed]
        merges += [m for m in res.merges if m[0] not in fixed]
        survivors.sort(key=lambda r: r["legacy_id"])
        with engine(url).begin() as conn:
            replace_slice(conn, f"stg.{entity}_dedup", key, cols, ([r.get(c) for c in cols] for r in survivors))
            replace_slice(conn, "stg.merge_map", {**key, "entity": entity},
                          ("legacy_id", "survivor_legacy_id", "score", "rule"), sorted(merges))
            replace_slice(conn, "stg.review_pair", {**key, "entity": entity},
                          ("legacy_id_a", "legacy_id_b", "score", "agreeing"), res.review)
        st["rows_in"], st["rows_out"] = len(rows), len(survivors)
    merged_into_existing = sum(1 for lid, s, _, _ in merges if lid != s and s in fixed)
    log.info("delta dedupe %s: %d changed rows, %d updates, %d new, %d candidates fetched, %d merged into"
             " migrated records", entity, len(rows), len(updates), len(new_rows), len(candidates),
             merged_into_existing)
    return {"entity": entity, "survivors": len(survivors), "updates": len(updates), "new": len(new_rows),
            "merged_into_existing": merged_into_existing}


# --- deletions and the watermark, inside the load transaction ------------------------------------

def _legacy_ids(legacy_url: str, entity: str) -> set[str]:
    with engine(legacy_url).connect() as conn:
        return {r[0] for r in conn.exec_driver_sql(f"SELECT id FROM {LEGACY_TABLE[entity]}")}


def deletions(url: str, legacy_url: str, lot: LotConfig, entity: str, run_id: str,
              detect_hard_deletes: bool) -> list[tuple[str, str]]:
    """(legacy_id, kind) of migrated records to delete: soft-deleted in this delta, or gone from the legacy CRM."""
    with engine(url).connect() as conn:
        soft = [r[0] for r in conn.execute(sa.text(
            "SELECT e.legacy_id FROM stg.excluded e JOIN crm_migration.crosswalk x ON x.entity = e.entity"
            " AND x.legacy_id = e.legacy_id AND x.merged_into IS NULL"
            " WHERE e.lot_id = :l AND e.run_id = :r AND e.entity = :e AND e.rule = 'soft_deleted'"),
            {"l": lot.lot_id, "r": run_id, "e": entity})]
        migrated = [r[0] for r in conn.execute(sa.text(
            "SELECT legacy_id FROM crm_migration.crosswalk WHERE entity = :e AND merged_into IS NULL"),
            {"e": entity})] if detect_hard_deletes else []
    out = [(lid, "soft_deleted") for lid in soft]
    if detect_hard_deletes:
        present = _legacy_ids(legacy_url, entity)
        out += [(lid, "hard_deleted") for lid in migrated if lid not in present]
    return sorted(set(out))


def apply_deletions(conn: sa.Connection, lot: LotConfig, entity: str, run_id: str,
                    rows: list[tuple[str, str]], mode: str) -> int:
    """Soft mode sets deleted_at (from the legacy date_modified when known); hard mode removes the row.
    The pre-image is kept first, so rollback can restore either."""
    table = TARGET_TABLE[entity]
    replace_slice(conn, "crm_migration.deletion", {"lot_id": lot.lot_id, "run_id": run_id, "entity": entity},
                  ("legacy_id", "kind", "mode"), ((lid, kind, mode) for lid, kind in rows))
    ids = [lid for lid, _ in rows]
    if not ids:
        return 0
    conn.execute(sa.text(
        f"INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before)"
        f" SELECT :l, :r, :e, t.legacy_id, 'update', to_jsonb(t) FROM {table} t WHERE t.legacy_id = ANY(:ids)"
        " ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING"),
        {"l": lot.lot_id, "r": run_id, "e": entity, "ids": ids})
    if mode == "hard":
        return conn.execute(sa.text(f"DELETE FROM {table} WHERE legacy_id = ANY(:ids)"), {"ids": ids}).rowcount
    # the deletion's legacy time is the row's newest version: a later load of an older one cannot undo it
    return conn.execute(sa.text(
        f"UPDATE {table} t SET deleted_at = d.at, migrated_legacy_modified = GREATEST(t.migrated_legacy_modified, d.at)"
        f" FROM (SELECT t0.legacy_id, coalesce((SELECT (CASE WHEN r.data ->> 'date_modified' ~ '^[0-9]{{4}}-'"
        "   THEN (r.data ->> 'date_modified')::timestamp END) AT TIME ZONE 'UTC' FROM stg.raw r"
        "   WHERE r.lot_id = :l AND r.run_id = :r AND r.entity = :e AND r.legacy_id = t0.legacy_id LIMIT 1),"
        f"  t0.updated_at) AS at FROM {table} t0 WHERE t0.legacy_id = ANY(:ids)) d"
        " WHERE t.legacy_id = d.legacy_id AND t.deleted_at IS NULL"),
        {"l": lot.lot_id, "r": run_id, "e": entity, "ids": ids}).rowcount


def run_delta_load(url: str, legacy_url: str, lot: LotConfig, entity: str, run_id: str, dry_run: bool,
                   delete_mode: str, detect_hard_deletes: bool) -> dict:
    dels = deletions(url, legacy_url, lot, entity, run_id, detect_hard_deletes)
    if dry_run:
        log.info("dry run: %s would delete %d records; target and watermark untouched", entity, len(dels))
        return {"entity": entity, "loaded": 0, "would_delete": len(dels), "dry_run": True}

    def delete(conn: sa.Connection) -> dict:
        return {"deleted": apply_deletions(conn, lot, entity, run_id, dels, delete_mode)}

    out = run_load(url, lot, entity, run_id, single_transaction=True, advance_watermark=True, before_finish=delete)
    out["watermark_advanced_at"] = datetime.now(timezone.utc).isoformat()
    return out


def freeze_check(url: str, legacy_url: str, run_id: str, entities: list[str] | None = None) -> dict:
    """Final run: every legacy row of every lot's scope of the entities (default all) is compared with
    the target by key and hash; any row not loaded, merged into a loaded survivor or excluded
    (quarantined ones included), and any active target row the legacy side no longer has, fails the
    run with the ids named."""
    from crm_migration.reconcile import freeze_compare
    from crm_migration.report import store_report

    lot = delta_lot(entities)
    problems, detail = [], {}
    for entity in lot.entities:
        rec = freeze_compare(url, legacy_url, lot, entity)
        detail[entity] = rec.as_dict()
        if not rec.ok:
            problems.append(rec.summary())
    store_report(url, "freeze", run_id, False, not problems, detail)
    if problems:
        raise LeftBehind("freeze: the legacy CRM and the target differ:\n" + "\n".join(problems))
    return {"ok": True, **{e: d["counts"] for e, d in detail.items()}}
