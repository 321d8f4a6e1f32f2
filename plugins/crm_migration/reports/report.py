"""Import report per run: counts per stage, the accounting identity, gates, timings.

source = loaded + merged + excluded + quarantined, per entity. The report is kept in
crm_migration.run_report and written as JSON to <report_dir>/<lot_id>/<run_id>.json.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, UTC
from pathlib import Path

import sqlalchemy as sa

from crm_migration.model.config import LotConfig, validate_key

from crm_migration.model.settings import REPO_ROOT
from crm_migration.model.db import engine, sql, sql_text, upsert_record
from crm_migration.stages.data_owner import export_quarantine, quarantine_file_name
from crm_migration.model.masking import mask_id, mask_value, scrub
from crm_migration.model.outcomes import ROW_OUTCOMES

log = logging.getLogger(__name__)
RECONCILED = ROW_OUTCOMES


def _relations(conn: sa.Connection, lot_id: str, run_id: str, entity: str) -> dict[str, dict[str, int]]:
    """The link tables the load's gate counted (stages.relations): relation -> kind -> count."""
    out: dict[str, dict[str, int]] = {}
    for name, value in conn.execute(sa.text(
            "SELECT check_name, value FROM crm_migration.gate_result WHERE lot_id = :l AND run_id = :r"
            " AND entity = :e AND stage = 'relations' ORDER BY check_name"), {"l": lot_id, "r": run_id, "e": entity}):
        relation, _, kind = name.removeprefix("relation ").partition(": ")
        out.setdefault(relation, {})[kind] = int(value or 0)
    return out


def _samples(conn: sa.Connection, lot_id: str, run_id: str, entity: str, per_reason: int = 3) -> dict:
    rows = conn.execute(sql("report/quarantine_samples.sql"),
                        {"l": lot_id, "r": run_id, "e": entity, "k": per_reason}).all()
    out: dict = {}
    for stage, code, legacy_id, detail, raw in rows:
        masked_detail = detail or ""
        for k, v in (raw or {}).items():  # the detail quotes the offending value, maybe re-spaced: mask it
            if isinstance(v, str) and v.strip() and mask_value(k, v) != v:
                for variant in {v, v.strip(), " ".join(v.split())}:
                    masked_detail = masked_detail.replace(variant, str(mask_value(k, v.strip())))
        out.setdefault(f"{stage}:{code}", []).append({
            "legacy_id": mask_id(legacy_id), "detail": scrub(masked_detail),
            "row": {k: mask_value(k, v) for k, v in (raw or {}).items()}})
    return out


def _match_model(conn: sa.Connection, lot_id: str, run_id: str, entity: str) -> dict | None:
    """The match weights the run learned (probabilistic dedupe): per field, the weight of agreeing at its
    best level and of disagreeing, and the prior."""
    model = conn.execute(sa.text("SELECT model FROM crm_migration.match_model WHERE lot_id = :l AND run_id = :r"
                                 " AND entity = :e"), {"l": lot_id, "r": run_id, "e": entity}).scalar_one_or_none()
    if not model:
        return None
    fields = {name: {"agree": levels[0]["weight"], "disagree": levels[-1]["weight"]}
              for name, levels in (model.get("weights") or {}).items() if levels}
    return {"prior": model.get("prior"), "fields": fields}


def _merge_examples(conn: sa.Connection, lot_id: str, run_id: str, entity: str, limit: int = 5) -> list[dict]:
    examples = conn.execute(sa.text(
        "SELECT legacy_id, survivor_legacy_id, score, rule FROM stg.merge_map WHERE lot_id = :l AND run_id = :r"
        " AND entity = :e AND legacy_id <> survivor_legacy_id ORDER BY score DESC, legacy_id LIMIT :k"),
        {"l": lot_id, "r": run_id, "e": entity, "k": limit}).mappings()
    return [{k: mask_id(v) if k.endswith("legacy_id") else v for k, v in m.items()} for m in examples]


def _split_for_contradictions(conn: sa.Connection, lot_id: str, run_id: str, entity: str) -> dict:
    """The links the dedupe cut because a cluster's members contradicted each other (two birth dates, two
    e-mails: dedupe._without_contradictions), by the field that cut them."""
    return dict(conn.execute(sa.text(
        "SELECT split_part(agreeing, ': ', 2), count(*) FROM stg.review_pair WHERE lot_id = :l AND run_id = :r"
        " AND entity = :e AND agreeing LIKE 'cut from its cluster: %' GROUP BY 1 ORDER BY 1"),
        {"l": lot_id, "r": run_id, "e": entity}).all())


# What became of merged customers (clusters.py): each keeps its target id whichever member survives.
CLUSTER_EVENTS = {"flipped": "another member survives (same target record, updated in place)",
                  "taken_over": "holder deleted or dropped out: the next member holds the record",
                  "rederived": "a member changed: values derived again from every member",
                  "split": "no longer matching: the part without the record got a new one",
                  "joined": "merged into a record migrated earlier"}


def _cluster_events(conn: sa.Connection, lot_id: str, run_id: str, entity: str) -> dict:
    counts = dict(conn.execute(sa.text(
        "SELECT event, count(*) FROM stg.cluster WHERE lot_id = :l AND run_id = :r AND entity = :e"
        " AND (members > 1 OR event <> 'new' AND event <> 'same') GROUP BY 1"),
        {"l": lot_id, "r": run_id, "e": entity}).all())
    return {k: counts.get(k, 0) for k in ("new", "same", *CLUSTER_EVENTS)}


def _reconciled(url: str, legacy_url: str | None, lot: LotConfig, run_id: str, entity: str, extracted: bool) -> dict:
    """The identity by id against the target: the loaded gate's reconciliation when it ran after the
    load, else computed now (a run whose load failed or was killed still gets the truth)."""
    from crm_migration.checks import reconcile

    rec = reconcile.stored(url, lot.lot_id, run_id, entity)
    if rec is None and extracted and legacy_url:
        try:
            rec = reconcile.reconcile_run(url, legacy_url, lot, entity, run_id).as_dict()
        except Exception as exc:  # noqa: BLE001 - the report must still be written, saying why
            rec = {"ok": False, "in_scope": None, "counts": {}, "failures": {}, "error": f"{type(exc).__name__}: {exc}"}
    if rec is None:
        return {"identity_ok": False, "reconciliation": {"ok": False, "error": "not extracted: nothing reconciled",
                                                         "counts": {}, "failures": {}}}
    counts = rec["counts"]
    return {"identity_ok": rec["ok"], "reconciliation": rec, "source": rec.get("in_scope"),
            **{k: counts.get(k, 0) for k in RECONCILED}}


class AccountingError(RuntimeError):
    """The accounting identity does not hold: some legacy row is unaccounted for."""


def _cutover(conn: sa.Connection, lot: LotConfig, run_id: str, started_at: datetime, entities: dict) -> dict:
    """Delta runs: the cutover window, from the run's start to the last watermark advanced."""
    p = {"l": lot.lot_id, "r": run_id}
    loads = dict(conn.execute(sa.text(
        "SELECT entity, finished_at FROM crm_migration.stage_timing WHERE lot_id = :l AND run_id = :r"
        " AND stage = 'load'"), p).all())
    deleted = dict(conn.execute(sa.text(
        "SELECT entity, count(*) FROM crm_migration.deletion WHERE lot_id = :l AND run_id = :r GROUP BY 1"),
        p).all())
    marks = {e: (wm.isoformat(), r) for e, wm, r in conn.execute(sa.text(
        "SELECT entity, modified_at, run_id FROM crm_migration.watermark"))}
    done = max(loads.values()) if loads else None
    return {
        "started_at": started_at.isoformat(),
        "watermark_advanced_at": done.isoformat() if done else None,
        "window_seconds": round((done - started_at).total_seconds(), 3) if done else None,
        "rows_per_entity": {e: {"changed": staged["source"], "loaded": staged["loaded"], "deleted": deleted.get(e, 0)}
                            for e, staged in ((e, c.get("staging") or c) for e, c in entities.items())},
        "watermarks": {e: {"modified_at": m, "run_id": r} for e, (m, r) in marks.items() if e in entities},
    }


def outcome(failed_tasks: list[str] | None, timings: list[dict], dry_run: bool, entities: dict) -> dict:
    """The run's outcome for the top of the report: failed (at which tasks), nothing loaded, or succeeded,
    with the rows this run wrote into the target (its load stages), not the rows the target holds."""
    loads = [t for t in timings if t["stage"] == "load"]
    written = sum(t["rows_out"] or 0 for t in loads)
    if failed_tasks and not written:
        verdict = f"NOTHING LOADED: failed at {', '.join(failed_tasks)}"
    elif failed_tasks:
        verdict = f"FAILED at {', '.join(failed_tasks)}"
    elif dry_run:
        verdict = "DRY RUN: nothing written to the target"
    elif not loads:
        verdict = "NOTHING LOADED: no load stage ran"
    elif written == 0:
        verdict = "SUCCEEDED: nothing to load (no row changed)"
    else:
        verdict = "SUCCEEDED"
    return {"verdict": verdict, "failed_tasks": list(failed_tasks or []), "rows_written": written,
            "loads_ran": [t["entity"] for t in loads],
            "target_holds": {e: c.get("loaded") for e, c in entities.items()}}


def build_report(url: str, lot: LotConfig, run_id: str, dry_run: bool, started_at: datetime | None = None,
                 legacy_url: str | None = None, failed_tasks: list[str] | None = None) -> dict:
    validate_key(lot.lot_id, run_id)
    p = {"l": lot.lot_id, "r": run_id}
    entities = {}
    with engine(url).connect() as conn:
        for entity in lot.entities:
            counts = sa.text(sql_text("report/counts.sql", e=entity))
            c = dict(conn.execute(counts, {**p, "e": entity}).mappings().one())
            c["staging"] = {k: c[k] for k in ("source", *RECONCILED)}
            if dry_run:  # nothing was loaded: the staging identity is all there is to check
                c["identity_ok"] = c["source"] == sum(c[k] for k in ROW_OUTCOMES)
                c["reconciliation"] = None
            else:
                c.update(_reconciled(url, legacy_url, lot, run_id, entity, c.pop("extracted")))
            q = conn.execute(sa.text(
                "SELECT stage, reason_code, count(*) FROM stg.quarantine WHERE lot_id = :l AND run_id = :r"
                " AND entity = :e GROUP BY 1, 2 ORDER BY 1, 2"), {**p, "e": entity}).all()
            x = conn.execute(sa.text(
                "SELECT rule, count(*) FROM stg.excluded WHERE lot_id = :l AND run_id = :r AND entity = :e"
                " GROUP BY 1 ORDER BY 1"), {**p, "e": entity}).all()
            c["quarantine_by_reason"] = {f"{s}:{code}": n for s, code, n in q}
            c["excluded_by_rule"] = {rule: n for rule, n in x}
            c["quarantine_samples"] = _samples(conn, lot.lot_id, run_id, entity)
            c["merge_examples"] = _merge_examples(conn, lot.lot_id, run_id, entity)
            c["clusters"] = _cluster_events(conn, lot.lot_id, run_id, entity)
            c["links_cut"] = _split_for_contradictions(conn, lot.lot_id, run_id, entity)
            c["match_model"] = _match_model(conn, lot.lot_id, run_id, entity)
            c["relations"] = _relations(conn, lot.lot_id, run_id, entity)
            c["cycles_cut"] = conn.execute(sa.text(
                "SELECT count(*) FROM crm_migration.link_cut WHERE lot_id = :l AND run_id = :r AND entity = :e"),
                {**p, "e": entity}).scalar_one()
            entities[entity] = c
        gates = [dict(m) for m in conn.execute(sa.text(
            "SELECT entity, stage, check_name, column_name, outcome, value FROM crm_migration.gate_result"
            " WHERE lot_id = :l AND run_id = :r ORDER BY entity, stage, check_name"), p).mappings()]
        timings = [dict(m) for m in conn.execute(sa.text(
            "SELECT entity, stage, rows_in, rows_out, seconds FROM crm_migration.stage_timing"
            " WHERE lot_id = :l AND run_id = :r ORDER BY finished_at"), p).mappings()]
        cutover = _cutover(conn, lot, run_id, started_at, entities) if started_at else None
        freeze = conn.execute(sa.text("SELECT report FROM crm_migration.run_report WHERE lot_id = 'freeze'"
                                      " AND run_id = :r"), p).scalar() if lot.lot_id == "delta" else None
    return {
        "lot_id": lot.lot_id, "run_id": run_id, "dry_run": dry_run,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "identity": "legacy rows (read from the legacy source) = loaded + merged + excluded + quarantined,"
                    " checked by id against the target",
        "identity_ok": all(e["identity_ok"] for e in entities.values()),
        "entities": entities, "gates": gates, "timings": timings, "cutover": cutover, "freeze": freeze,
        "outcome": outcome(failed_tasks, timings, dry_run, entities),
    }


def report_path(report_dir: str, lot_id: str, run_id: str) -> Path:
    base = Path(report_dir)
    if not base.is_absolute():
        base = REPO_ROOT / base
    return base / lot_id / (re.sub(r"[^A-Za-z0-9_.-]", "_", run_id) + ".json")


def store_report(url: str, lot_id: str, run_id: str, dry_run: bool, identity_ok: bool, report: dict) -> None:
    """Keep a report in crm_migration.run_report (one row per lot and run, replaced on a rerun)."""
    with engine(url).begin() as conn:
        upsert_record(conn, "crm_migration.run_report", {"lot_id": lot_id, "run_id": run_id},
                      {"dry_run": dry_run, "identity_ok": identity_ok, "report": json.dumps(report, default=str)},
                      jsonb=("report",), touch="created_at")


def write_report(url: str, report: dict, report_dir: str) -> Path:
    from crm_migration.reports.report_html import render_html

    path = report_path(report_dir, report["lot_id"], report["run_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with engine(url).connect() as conn:  # the quarantine for data owners, a CSV per entity and reason
        files = export_quarantine(conn, report["lot_id"], report["run_id"], path.with_suffix(""))
    if files:
        report["quarantine_files"] = {"directory": str(path.with_suffix("")), "files": files}
    store_report(url, report["lot_id"], report["run_id"], report["dry_run"], report["identity_ok"], report)
    path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    path.with_suffix(".html").write_text(render_html(report, csv_href=lambda entity, reason: (
        f"{path.stem}/{quarantine_file_name(entity, reason)}")), encoding="utf-8")
    return path


def summary_text(report: dict) -> str:
    lines = [f"Import report {report['lot_id']} / {report['run_id']}{' (dry run)' if report['dry_run'] else ''}"]
    freeze = report.get("freeze") or {}
    if freeze.get("verdict"):  # the final run: its verdict first
        lines.append(f"  FREEZE {freeze['headline']}")
        for entity, waived in (freeze.get("waivers") or {}).items():
            lines += [f"      {entity} waived: {n} by {w}" for w, n in waived.items()]
    if report.get("outcome"):
        o = report["outcome"]
        lines.append(f"  outcome: {o['verdict']}; rows written to the target by this run: {o['rows_written']:,}")
    for entity, c in report["entities"].items():
        mark = "OK" if c["identity_ok"] else "MISMATCH"
        lines.append(f"  {entity}: legacy {c['source']} = loaded {c['loaded']} + merged {c['merged']}"
                     f" + excluded {c['excluded']} + quarantined {c['quarantined']}"
                     f"  [{mark}, by id against the target]")
        lines += _entity_lines(c)
    if report.get("cutover"):
        c = report["cutover"]
        lines.append(f"  cutover window: {c['window_seconds']} s from run start to watermark advanced"
                     f" ({c['started_at']} -> {c['watermark_advanced_at']})")
        for e, r in c["rows_per_entity"].items():
            lines.append(f"      {e}: {r['changed']} changed rows, {r['loaded']} upserted, {r['deleted']} deleted;"
                         f" watermark {c['watermarks'].get(e, {}).get('modified_at')}")
    failed = [g for g in report["gates"] if g["outcome"] in ("FAILED", "ERROR")]
    warned = [g for g in report["gates"] if g["outcome"] == "WARN"]
    lines.append(f"  gates: {len(report['gates'])} checks, {len(failed)} failed, {len(warned)} warned")
    for g in failed + warned:
        lines.append(f"      {g['outcome']}: {g['entity']}/{g['stage']}: {g['check_name']} value={g['value']}")
    return "\n".join(lines)


def _entity_lines(c: dict) -> list[str]:
    """The indented lines under an entity's identity line: what the reconciliation, the load and the
    relations found."""
    lines: list[str] = []
    rec = c.get("reconciliation") or {}
    for kind, n in (rec.get("counts") or {}).items():
        if n and kind not in RECONCILED:
            ids = ", ".join((rec.get("failures") or {}).get(kind, [])[:5])
            lines.append(f"      {kind}: {n}{' (' + ids + ')' if ids else ''}")
    if rec.get("error"):
        lines.append(f"      not reconciled: {rec['error']}")
    if c.get("clock_skewed"):
        lines.append(f"      clock-skewed (dated after the legacy clock at extract, taken): {c['clock_skewed']}")
    if c.get("rejected_older"):
        lines.append(f"      not applied, the target holds a newer version (newer wins): {c['rejected_older']}")
    for k, n in c["quarantine_by_reason"].items():
        lines.append(f"      quarantined {k}: {n}")
    for k, n in c["excluded_by_rule"].items():
        lines.append(f"      excluded {k}: {n}")
    for name, r in (c.get("relations") or {}).items():
        lines.append(f"      links {name}: {r.get('legacy_links')} live in the legacy CRM = {r.get('linked')} in"
                     f" the target + {r.get('end_missing')} with an end not migrated; lost {r.get('lost')},"
                     f" unexpected {r.get('unexpected')}")
    if c.get("cycles_cut"):
        lines.append(f"      hierarchy cycles in the legacy CRM cut, one reference left empty each: {c['cycles_cut']}"
                     " (crm_migration.link_cut)")
    for child, n in (c.get("relinked") or {}).items():
        lines.append(f"      relinked: {n} {child} rows now point at rows of this load (they arrived before it)")
    for how, n in (c.get("edited_in_target") or {}).items():
        lines.append(f"      edited in the new CRM since migrated, {how}: {n} rows (crm_migration.edit_conflict)")
    if c.get("corrections"):
        lines.append(f"      corrected by data owners (config corrections file): {c['corrections']} fields")
    for k, n in (c.get("defaulted_references") or {}).items():
        lines.append(f"      {k} empty or unknown, given its configured default: {n}")
    for k, why in CLUSTER_EVENTS.items():
        if (c.get("clusters") or {}).get(k):
            lines.append(f"      merged customers {k}: {c['clusters'][k]} ({why})")
    if c["review_pairs"]:
        lines.append(f"      dedupe pairs to review (not merged): {c['review_pairs']} in stg.review_pair")
    for why, n in (c.get("links_cut") or {}).items():
        lines.append(f"      clusters split where members contradicted ({why}): {n} links cut, listed with the"
                     " pairs to review")
    if c.get("match_model"):
        w = ", ".join(f"{f} {v['agree']:+.1f}/{v['disagree']:+.1f}" for f, v in c["match_model"]["fields"].items())
        lines.append(f"      match weights learned (bits, agree/disagree): {w}")
    return lines



def make_report(url: str, lot: LotConfig, run_id: str, dry_run: bool, report_dir: str,
                started_at: datetime | None = None, legacy_url: str | None = None,
                failed_tasks: list[str] | None = None) -> dict:
    """Build, store and check the report; raise AccountingError if a row is unaccounted for -- unless a task
    of the run failed: then rows are left behind by that failure, the report says where it stopped, and the
    run fails by its watcher, not by its report.
    started_at (delta runs) adds the cutover window; legacy_url lets the report reconcile a run
    whose loaded gate never ran."""
    report = build_report(url, lot, run_id, dry_run, started_at, legacy_url, failed_tasks)
    path = write_report(url, report, report_dir)
    text = summary_text(report)
    if not report["identity_ok"] and failed_tasks:
        log.warning("%s: rows are left behind by the failure, report at %s", report["outcome"]["verdict"], path)
    elif not report["identity_ok"]:
        raise AccountingError(f"accounting identity broken, report at {path}\n{text}")
    return {"path": str(path), "identity_ok": True, "summary": text}
