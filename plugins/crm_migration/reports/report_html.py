"""The import report as one self-contained HTML page (no scripts, no external assets)."""

from __future__ import annotations

import json
from html import escape

from crm_migration.model.outcomes import ROW_OUTCOMES

_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2733}h1{font-size:20px}
h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ccd}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eef1f6}
.ok{color:#177245;font-weight:600}.bad{color:#b3261e;font-weight:600}.warn{color:#9a6700;font-weight:600}
code{font-size:12px}.banner{padding:12px 16px;border-radius:6px;margin:12px 0;font-size:15px}
.banner.ok{background:#e8f5e9;border:1px solid #2e7d32}.banner.bad{background:#ffebee;border:1px solid #c62828}
.banner.warn{background:#fff8e1;border:1px solid #9a6700}.banner div{margin:2px 0}.chart{display:block;margin:8px 0}"""


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _outcome(o: str) -> str:
    cls = {"PASSED": "ok", "SKIPPED": "ok", "WARN": "warn"}.get(o, "bad")
    return f'<span class="{cls}">{escape(o)}</span>'


def banner(report: dict, live: dict | None = None) -> str:
    """The top of the report: the run's outcome (live from Airflow when the page is served by the plugin,
    else as the report task saw it), the verdict of the reconciliation by id against the target, and for a
    delta run the cutover window."""
    e = escape
    o = report.get("outcome") or {}
    verdict = (live or {}).get("verdict") or o.get("verdict") or "outcome not recorded (older report)"
    rec_ok = report.get("identity_ok")
    freeze = report.get("freeze") or {}
    if freeze.get("verdict"):  # the final run: the whole scope, by id and by content
        rec_ok = rec_ok and freeze["verdict"] == "GO"
    failed = verdict.startswith(("FAILED", "RUNNING")) or "failed at" in verdict or not rec_ok
    cls = "bad" if failed else ("warn" if verdict.startswith(("NOTHING", "DRY")) else "ok")
    lines = [f"<div class='verdict'><b>Freeze: {e(freeze['headline'])}</b></div>"] if freeze.get("verdict") else []
    lines.append(f"<div><b>Outcome:</b> {e(verdict)}</div>")
    if "rows_written" in o:
        lines.append(f"<div><b>Rows written to the target by this run:</b> {o['rows_written']:,}</div>")
    scope = "every row of every scope, by id and content (the freeze)" if freeze.get("verdict") else (
        "by id, against the target")
    lines.append(f"<div><b>Every legacy row accounted for ({scope}):</b> "
                 f"{'yes' if rec_ok else 'NO: see the reconciliation below'}</div>")
    cut = report.get("cutover")
    if cut:
        lines.append(f"<div><b>Cutover window:</b> {e(str(cut.get('window_seconds')))} s (run start to watermark"
                     " advanced)</div>")
    return f"<div class='banner {cls}'>{''.join(lines)}</div>"


def _freeze(freeze: dict) -> str:
    """The freeze's verdict: causes per entity with their first ids, and the waivers it relied on."""
    e = escape
    out = [f"<h2>Freeze: {e(freeze['verdict'])}</h2><p>{e(freeze['headline'])}</p>"]
    if freeze.get("causes"):
        out.append(_table(["entity", "cause", "rows", "first legacy ids"],
                          [[e(n), e(k), v, e(", ".join(map(str, freeze["first_ids"][n].get(k, []))))]
                           for n, c in freeze["causes"].items() for k, v in c.items()]))
    if freeze.get("waivers"):
        out.append(_table(["entity", "waiver (reason, approver)", "rows"],
                          [[e(n), e(w), v] for n, ws in freeze["waivers"].items() for w, v in ws.items()]))
    return "".join(out)


def render_html(report: dict, live: dict | None = None, csv_href=None) -> str:  # noqa: ANN001
    """csv_href(entity, reason) -> the link to that part of the quarantine as CSV (None: no links).

    Long because it is the page's sections in reading order; a section with logic of its own is a helper
    (banner, _freeze, charts)."""
    from crm_migration.reports import charts

    e = escape
    title = f"Import report {report['lot_id']} / {report['run_id']}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>", banner(report, live),
             f"<p>generated {e(str(report.get('generated_at', '')))}"
             f"{' &mdash; <b>dry run</b>' if report.get('dry_run') else ''}</p>"]
    entities = report.get("entities") or {}
    if (report.get("freeze") or {}).get("verdict"):
        parts.append(_freeze(report["freeze"]))
    counted = {n: c for n, c in entities.items() if isinstance(c, dict) and c.get("source") is not None}
    if counted:
        parts.append("<h2>Where every legacy row went</h2>" + charts.funnel(counted))
    stage_time: dict[str, float] = {}
    for t in report.get("timings") or []:
        key = f"{t['entity']} {t['stage']}"
        stage_time[key] = stage_time.get(key, 0.0) + float(t["seconds"] or 0)
    if stage_time:
        parts.append("<h2>Time per stage</h2>" + charts.bars(list(stage_time.items()), "s"))
    if "identity" in report:
        ok = report.get("identity_ok")
        parts.append(f"<h2>Every legacy row accounted for</h2><p>{e(report['identity'])}: "
                     f"<span class='{'ok' if ok else 'bad'}'>{'holds' if ok else 'BROKEN'}</span></p>")
        parts.append(_table(
            ["entity", "source", *ROW_OUTCOMES, "identity", "cleansed",
             "survivors", "pairs to review"],
            [[e(n), c["source"], *(c[k] for k in ROW_OUTCOMES),
              _outcome("PASSED" if c["identity_ok"] else "FAILED"), c.get("cleansed", ""),
              c.get("deduplicated", ""), c.get("review_pairs", "")] for n, c in entities.items()]))
    recs = {n: c["reconciliation"] for n, c in entities.items() if isinstance(c, dict) and c.get("reconciliation")}
    if recs:
        parts.append("<h2>Reconciliation by id (legacy source against the target)</h2>")
        parts.append(_table(["entity", "fate", "rows", "legacy ids (first 20)"],
                            [[e(n), e(kind), v, e(", ".join((r.get("failures") or {}).get(kind, [])))]
                             for n, r in recs.items() for kind, v in (r.get("counts") or {}).items() if v]
                            + [[e(n), "not reconciled", "", e(r["error"])] for n, r in recs.items() if r.get("error")]))
    for name, c in entities.items():
        if not isinstance(c, dict) or "quarantine_by_reason" not in c:
            continue
        parts.append(f"<h2>{e(name)}: quarantine, exclusions, merges</h2>")
        parts.append(_table(["quarantined (stage:reason)", "rows", "for data owners"],
                            [[e(k), v, f"<a href='{e(csv_href(name, k))}'>CSV</a>" if csv_href else ""]
                             for k, v in c["quarantine_by_reason"].items()] or [["none", 0, ""]]))
        for reason, samples in (c.get("quarantine_samples") or {}).items():
            parts.append(f"<p>samples of <b>{e(reason)}</b> (personal data masked)</p>")
            parts.append(_table(["legacy id", "detail", "row"],
                                [[e(str(s["legacy_id"])), e(str(s["detail"])),
                                  f"<code>{e(json.dumps(s['row'], ensure_ascii=False, default=str)[:400])}</code>"]
                                 for s in samples]))
        parts.append(_table(["excluded (rule)", "rows"],
                            [[e(k), v] for k, v in c["excluded_by_rule"].items()] or [["none", 0]]))
        events = {k: v for k, v in (c.get("clusters") or {}).items() if v}
        if events:
            parts.append(_table(["merged customers (target id kept per cluster)", "clusters"],
                                [[e(k), v] for k, v in events.items()]))
        if c.get("merge_examples"):
            parts.append(_table(["merged legacy id", "into survivor", "score", "agreeing fields"],
                                [[e(m["legacy_id"]), e(m["survivor_legacy_id"]), f"{m['score']:.3f}", e(m["rule"])]
                                 for m in c["merge_examples"]]))
    if report.get("cutover"):
        c = report["cutover"]
        parts.append(f"<h2>Cutover window</h2><p><b>{e(str(c['window_seconds']))} s</b> from run start "
                     f"({e(str(c['started_at']))}) to watermark advanced ({e(str(c['watermark_advanced_at']))})</p>")
        parts.append(_table(["entity", "changed", "upserted", "deleted", "watermark"],
                            [[e(n), r["changed"], r["loaded"], r["deleted"],
                              e(str(c["watermarks"].get(n, {}).get("modified_at")))]
                             for n, r in c["rows_per_entity"].items()]))
    if report.get("gates"):
        parts.append("<h2>Quality gates (Soda)</h2>")
        parts.append(_table(["entity", "stage", "check", "column", "outcome", "value"],
                            [[e(g["entity"]), e(g["stage"]), e(g["check_name"]), e(str(g["column_name"] or "")),
                              _outcome(g["outcome"]), e(str(g["value"]))] for g in report["gates"]]))
    if report.get("timings"):
        parts.append("<h2>Timings</h2>")
        parts.append(_table(["entity", "stage", "rows in", "rows out", "seconds", "rows/s"],
                            [[e(t["entity"]), e(t["stage"]), t["rows_in"], t["rows_out"], t["seconds"],
                              f"{(t['rows_in'] or 0) / t['seconds']:,.0f}" if t["seconds"] else ""]
                             for t in report["timings"]]))
    if report.get("rolled_back"):
        parts.append("<h2>Rollback</h2><pre>" + e(json.dumps(report, indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
