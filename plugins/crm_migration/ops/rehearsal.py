"""Nightly rehearsal: the whole migration on a scratch target, compared with the night before,
and a forecast of the cutover window.

The rehearsal target (connection ``crm_rehearsal``) is rebuilt from scratch; the crm_rehearsal DAG then
triggers the real lot DAGs and the delta DAG on it (``target=rehearsal``), under the scheduler. Results
are kept in ``rehearsal.history`` of the rehearsal database (a schema the rebuild does not touch).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict

import sqlalchemy as sa

from crm_migration.ops import pipeline
from crm_migration.model.db import create_database_if_missing, engine, ensure_target_schema
from crm_migration.model.spec import target_schema
from crm_migration.model.outcomes import ROW_OUTCOMES

log = logging.getLogger(__name__)
FORECAST_STAGES = pipeline.STAGES
REPLAY_SUFFIX = "__replay"  # the rehearsal's delta replay run: rehearsal__<run id>__replay


def rebuild(url: str) -> None:
    create_database_if_missing(url)
    with engine(url).begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {target_schema()}, crm_migration, stg CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS rehearsal")
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS rehearsal.history (run_id text PRIMARY KEY, finished_at timestamptz NOT NULL"
            " DEFAULT now(), summary jsonb NOT NULL)")
    ensure_target_schema(url)


def measure(url: str, run_id: str) -> dict:
    """Rows, seconds and rows/s per (lot, entity, stage) of this rehearsal."""
    with engine(url).connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT lot_id, entity, stage, rows_in, seconds FROM crm_migration.stage_timing WHERE run_id = :r"),
            {"r": run_id}).all()
        counts = {lot_id: report["entities"] for lot_id, report in conn.execute(sa.text(
            "SELECT lot_id, report FROM crm_migration.run_report WHERE run_id = :r"), {"r": run_id})}
        # the delta run's window as the scheduler ran it (trigger to watermark advanced, few changes):
        # the cutover's fixed cost, scheduling included
        # and the replay's: migrated rows read again as if changed, through the same delta path
        windows = dict(conn.execute(sa.text(
            "SELECT run_id, (report->'cutover'->>'window_seconds')::float FROM crm_migration.run_report"
            " WHERE run_id = ANY(:r) AND lot_id = 'delta'"), {"r": [run_id, run_id + REPLAY_SUFFIX]}).all())
        window, replay = windows.get(run_id), windows.get(run_id + REPLAY_SUFFIX)
        migrated = conn.execute(sa.text("SELECT count(*) FROM crm_migration.crosswalk")).scalar()
    # a lot's dedupe ran as prepare, partitions and clustering: its time is the three's
    spent: dict[str, float] = defaultdict(float)
    for lot, entity, stage, _, s in rows:
        spent[f"{lot}/{entity}/{stage.split('_')[0] if stage.startswith('dedupe_') else stage}"] += s or 0.0
    timings = {f"{lot}/{entity}/{stage}": {"rows": n or 0, "seconds": spent[f"{lot}/{entity}/{stage}"],
                                          "rows_per_s": round((n or 0) / spent[f"{lot}/{entity}/{stage}"], 1)
                                          if spent[f"{lot}/{entity}/{stage}"] else None}
               for lot, entity, stage, n, s in rows if not stage.startswith("dedupe_")}
    slim = {lot: {e: {k: c[k] for k in ("source", *ROW_OUTCOMES, "identity_ok")}
                  for e, c in ents.items()} for lot, ents in counts.items()}
    return {"timings": timings, "counts": slim, "delta_fixed_seconds": float(window or 0),
            "replay_seconds": replay, "migrated_rows": int(migrated or 0)}


def forecast(measured: dict, expected_changes: int) -> dict:
    """Cutover window forecast from the delta path's costs measured under the scheduler: the delta run with
    nothing changed (its fixed cost: scheduling, reads of the watermark windows, gates, commits) plus, per
    changed row, what the replay of min(expected_changes, migrated rows) migrated rows added to it. When the
    replay read as many rows as expected, the forecast is the replay's own window. Without a replay (an older
    rehearsal), the lots' rows/s per stage (slowest entity) -- a full lot's dedupe costs far more per row
    than the delta's, so that estimate runs high."""
    fixed = measured["delta_fixed_seconds"]
    replayed = min(expected_changes, measured.get("migrated_rows") or 0)
    if measured.get("replay_seconds") is not None and replayed:
        per_row = max(measured["replay_seconds"] - fixed, 0.0) / replayed
        return {"expected_changes": expected_changes, "method": "delta replay", "replayed_rows": replayed,
                "fixed_seconds": round(fixed, 2), "seconds_per_changed_row": round(per_row, 5),
                "window_seconds": round(fixed + per_row * expected_changes, 1)}
    per_stage = {}
    for stage in FORECAST_STAGES:
        rates = [t["rows_per_s"] for k, t in measured["timings"].items()
                 if k.endswith(f"/{stage}") and not k.startswith("delta/") and t["rows_per_s"]]
        per_stage[stage] = round(expected_changes / min(rates), 2) if rates else None
    variable = sum(v for v in per_stage.values() if v)
    return {"expected_changes": expected_changes, "method": "lot rates", "seconds_per_stage": per_stage,
            "fixed_seconds": round(fixed, 2), "window_seconds": round(variable + fixed, 1)}


def compare(previous: dict | None, current: dict) -> dict:
    """Counts that moved and stages that slowed by more than 20 % since the previous rehearsal."""
    if not previous:
        return {"previous": None}
    moved, slower = [], []
    for lot, ents in current["counts"].items():
        for entity, c in ents.items():
            before = previous["counts"].get(lot, {}).get(entity, {})
            for k, v in c.items():
                if before.get(k) != v:
                    moved.append(f"{lot}/{entity} {k}: {before.get(k)} -> {v}")
    for key, t in current["timings"].items():
        before = previous["timings"].get(key)
        if before and before.get("rows_per_s") and t["rows_per_s"] and t["rows_per_s"] < 0.8 * before["rows_per_s"]:
            slower.append(f"{key}: {before['rows_per_s']} -> {t['rows_per_s']} rows/s")
    return {"previous": previous.get("run_id"), "counts_changed": moved, "stages_slower": slower}


def record(url: str, run_id: str, expected_changes: int) -> dict:
    measured = measure(url, run_id)
    with engine(url).begin() as conn:
        prev = conn.execute(sa.text("SELECT run_id, summary FROM rehearsal.history WHERE run_id <> :r"
                                    " ORDER BY finished_at DESC LIMIT 1"), {"r": run_id}).first()
        previous = {**prev.summary, "run_id": prev.run_id} if prev else None
        summary = {**measured, "forecast": forecast(measured, expected_changes),
                   "comparison": compare(previous, measured)}
        conn.execute(sa.text("INSERT INTO rehearsal.history (run_id, summary) VALUES (:r, CAST(:s AS jsonb))"
                             " ON CONFLICT (run_id) DO UPDATE SET summary = EXCLUDED.summary, finished_at = now()"),
                     {"r": run_id, "s": json.dumps(summary, default=str)})
    f = summary["forecast"]
    log.info("rehearsal %s: forecast cutover window for %d changed rows: %.1f s (%s); comparison: %s",
             run_id, expected_changes, f["window_seconds"], {k: v for k, v in f.items() if k != "window_seconds"},
             summary["comparison"])
    return summary

