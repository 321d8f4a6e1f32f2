"""Airflow UI plugin: the import reports inside the Airflow UI, behind its login.

- a nav page "CRM import reports" (Browse) listing the runs, and an "Import report" tab on every DAG run,
  both shown inside Airflow (``url_route``: the UI frames the page under its own header);
- served by a small FastAPI app mounted at /crm-reports on the API server; every route needs an Airflow
  login (the JWT the UI keeps in its cookie, or a Bearer token): the run page checks read access to the
  DAG's runs through Airflow's auth manager; no OpenAPI page or schema is published; a browser without a
  login is redirected to Airflow's login page (and back after it), an API client gets 401;
- the page reads crm_migration.run_report through the crm_target connection; the run's outcome comes live
  from Airflow's own database (running, failed at which task); a target that does not answer gives a
  clear 503 page, never a 500.
"""

from __future__ import annotations

import logging
from html import escape
from urllib.parse import urlencode

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag, requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException  # FastAPI's and Starlette's both

from crm_migration.model.errors import first_line

log = logging.getLogger(__name__)
app = FastAPI(title="CRM import reports", docs_url=None, redoc_url=None, openapi_url=None)
_PAGE = ("<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>body{{font:14px/1.4"
         " system-ui,sans-serif;margin:24px;color:#1d2733}}td,th{{border:1px solid #ccd;padding:4px 8px;text-align:"
         "left}}table{{border-collapse:collapse}}th{{background:#eef1f6}}.bad{{color:#b3261e;font-weight:600}}"
         ".ok{{color:#177245;font-weight:600}}</style></head><body><h1>{title}</h1>{body}</body></html>")


def _wants_html(request: Request) -> bool:
    """A browser navigating (it asks for HTML), not an API client or a script."""
    return "text/html" in request.headers.get("accept", "")


@app.exception_handler(HTTPException)
async def _login_first(request: Request, exc: HTTPException) -> Response:
    """Without a login, a browser is sent to Airflow's login page (and back here after it); API clients
    and scripts keep the 401 (403: logged in without access to this DAG's runs, answered as it is)."""
    if exc.status_code == 401 and _wants_html(request):
        try:
            from airflow.api_fastapi.app import get_auth_manager

            login = get_auth_manager().get_url_login(next_url=str(request.url))
        except Exception as err:  # noqa: BLE001 - no auth manager to ask: the plain 401 below
            log.info("crm-reports: no login page to redirect to: %s", err)
        else:
            return RedirectResponse(login, status_code=303)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _lot_of(dag_id: str) -> str:
    if dag_id.startswith("crm_lot_"):
        return dag_id.removeprefix("crm_lot_")
    return {"crm_delta_sync": "delta", "crm_rollback": "rollback"}.get(dag_id, dag_id)


def _dag_of(lot_id: str) -> str:
    return {"delta": "crm_delta_sync", "freeze": "crm_delta_sync", "rollback": "crm_rollback"}.get(
        lot_id, f"crm_lot_{lot_id}")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=body), status_code=status)


def _target_down(exc: Exception) -> HTMLResponse:
    log.warning("crm-reports: the target database does not answer: %s", exc)
    first = first_line(exc, 300)
    return _page("CRM import reports: the target database does not answer", (
        "<p class='bad'>The reports live in the target database (Airflow connection <code>crm_target</code>),"
        " which could not be reached just now.</p>"
        f"<p><code>{escape(type(exc).__name__)}: {escape(first)}</code></p>"
        "<p>The runs themselves are not affected by this page. Check that the database is up and that the"
        " connection is right (Admin &rarr; Connections), then reload.</p>"), 503)


def _live_outcome(dag_id: str, run_id: str) -> dict | None:
    """The run's state from Airflow's database: running, failed at which tasks, or succeeded."""
    try:
        from sqlalchemy import select

        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            state = session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
            tis = session.execute(select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)).all()
    except Exception as exc:  # noqa: BLE001 - the stored outcome is shown instead
        log.info("crm-reports: no live state for %s/%s: %s", dag_id, run_id, exc)
        return None
    if state is None:
        return None
    failed = sorted(t for t, s in tis if s == "failed" and t != "watcher")
    if failed:
        return {"verdict": f"FAILED at {', '.join(failed)}", "state": str(state)}
    if str(state) in ("running", "queued"):
        done = sum(s in ("success", "skipped") for _, s in tis)
        return {"verdict": f"RUNNING ({done} of {len(tis)} tasks done)", "state": str(state)}
    return {"state": str(state)}


@app.get("/", response_class=HTMLResponse, dependencies=[Depends(requires_authenticated())])
def index() -> HTMLResponse:
    import sqlalchemy as sa

    from crm_migration.model.db import connection_url, engine

    try:
        with engine(connection_url("crm_target")).connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT lot_id, run_id, identity_ok, dry_run, created_at, report->'outcome'->>'verdict' AS verdict,"
                " report->'cutover'->>'window_seconds' AS window FROM crm_migration.run_report"
                " ORDER BY created_at DESC LIMIT 200")).all()
    except Exception as exc:  # noqa: BLE001 - a clear page, never a 500
        return _target_down(exc)
    items = "".join(
        f"<tr><td>{escape(r.lot_id)}</td><td><a href='run?"
        f"{escape(urlencode({'dag_id': _dag_of(r.lot_id), 'lot_id': r.lot_id, 'run_id': r.run_id}))}'>"
        f"{escape(r.run_id)}</a></td><td>{escape(r.verdict or '')}</td>"
        f"<td class='{'ok' if r.identity_ok else 'bad'}'>{'yes' if r.identity_ok else 'NO'}</td>"
        f"<td>{escape(r.window or '')}</td><td>{'yes' if r.dry_run else ''}</td>"
        f"<td>{r.created_at:%Y-%m-%d %H:%M}</td></tr>" for r in rows)
    return _page("CRM import reports", "<p><a href='rehearsals'>Nightly rehearsals: trend and forecast</a></p>" + (
        "<table><tr><th>lot</th><th>run</th><th>outcome</th><th>every row accounted for</th>"
        f"<th>cutover window (s)</th><th>dry run</th><th>at</th></tr>{items}</table>"
        if rows else "<p>No report yet: every lot and delta run writes one in its <code>report</code> task.</p>"))


@app.get("/rehearsals", response_class=HTMLResponse, dependencies=[Depends(requires_authenticated())])
def rehearsals() -> HTMLResponse:
    """The nightly rehearsals: rows/s and forecast cutover window, night after night (rehearsal.history of
    the crm_rehearsal connection)."""
    import sqlalchemy as sa

    from crm_migration.reports import charts
    from crm_migration.model.db import connection_url, engine

    try:
        with engine(connection_url("crm_rehearsal")).connect() as conn:
            rows = conn.execute(sa.text("SELECT run_id, finished_at, summary FROM rehearsal.history"
                                        " ORDER BY finished_at DESC LIMIT 60")).all()[::-1]
    except Exception as exc:  # noqa: BLE001 - no rehearsal yet, or its database is down: say so
        return _page("Rehearsals", f"<p>No rehearsal history to show ({escape(type(exc).__name__)}): the"
                     " crm_rehearsal DAG writes it in the rehearsal database.</p>")
    nights, rates, windows = [], [], []
    for r in rows:
        t = [v for k, v in r.summary.get("timings", {}).items() if not k.startswith("rehearsal") and v["seconds"]]
        seconds = sum(v["seconds"] for v in t)
        nights.append(f"{r.finished_at:%m-%d}")
        rates.append(round(sum(v["rows"] for v in t) / seconds, 1) if seconds else None)
        windows.append((r.summary.get("forecast") or {}).get("window_seconds"))
    table = "".join(f"<tr><td>{escape(r.run_id)}</td><td>{r.finished_at:%Y-%m-%d %H:%M}</td><td>{rate or ''}</td>"
                    f"<td>{w if w is not None else ''}</td></tr>" for r, rate, w in zip(rows, rates, windows,
                                                                                         strict=True))
    return _page("Rehearsals", (
        charts.trend(nights, {"rows/s (all stages)": rates, "forecast window (s)": windows},
                     title="rows/s and forecast cutover window per night") if rows else "<p>No rehearsal yet.</p>")
        + f"<table><tr><th>rehearsal</th><th>finished</th><th>rows/s</th><th>forecast window (s)</th></tr>"
          f"{table}</table>")


@app.get("/run", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
def run(run_id: str, lot_id: str | None = None, dag_id: str | None = None) -> HTMLResponse:
    import sqlalchemy as sa

    from crm_migration.model.db import connection_url, engine
    from crm_migration.reports.report_html import render_html

    run_id = run_id.replace(" ", "+")  # a '+' sent unencoded arrives as a space; run ids never hold one
    lot = lot_id or _lot_of(dag_id or "")
    live = _live_outcome(dag_id or _dag_of(lot), run_id)
    try:
        with engine(connection_url("crm_target")).connect() as conn:
            report = conn.execute(sa.text("SELECT report FROM crm_migration.run_report WHERE lot_id = :l"
                                          " AND run_id = :r"), {"l": lot, "r": run_id}).scalar()
    except Exception as exc:  # noqa: BLE001 - a clear page, never a 500
        return _target_down(exc)
    if report is None:
        state = (live or {}).get("verdict") or (live or {}).get("state")
        return _page(f"No import report yet for {lot} / {run_id}", (
            "<p>The run's <code>report</code> task writes it when the stages are done."
            f"{f' The run: {escape(state)}.' if state else ''}</p>"), 404)
    def csv_href(entity: str, reason: str) -> str:
        return "quarantine.csv?" + urlencode({"dag_id": dag_id or _dag_of(lot), "lot_id": lot, "run_id": run_id,
                                              "entity": entity, "reason": reason})

    return HTMLResponse(render_html(report, live, csv_href=csv_href))


@app.get("/quarantine.csv", dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
def quarantine_csv(run_id: str, lot_id: str, entity: str, reason: str, dag_id: str | None = None) -> Response:
    """One entity's quarantine for one reason (stage:CODE) as CSV for data owners: ids in clear, every defect
    of a row, personal values masked (crm_migration.data_owner)."""
    import csv
    import io

    from crm_migration.stages.data_owner import quarantine_csv as rows_of, quarantine_file_name
    from crm_migration.model.db import connection_url, engine

    out = io.StringIO()
    writer = csv.writer(out)
    try:
        with engine(connection_url("crm_target")).connect() as conn:
            for _, line in rows_of(conn, lot_id, run_id.replace(" ", "+"), entity, reason):
                writer.writerow(line)
    except Exception as exc:  # noqa: BLE001 - a clear page, never a 500
        return _target_down(exc)
    return Response(out.getvalue(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{quarantine_file_name(entity, reason)}"'})


class CrmReportsPlugin(AirflowPlugin):
    name = "crm_reports"
    fastapi_apps = [{"app": app, "url_prefix": "/crm-reports", "name": "CRM import reports"}]
    external_views = [
        {"name": "CRM import reports", "href": "/crm-reports/", "destination": "nav", "category": "browse",
         "url_route": "crm-import-reports"},
        {"name": "Import report", "href": "/crm-reports/run?dag_id={DAG_ID}&run_id={RUN_ID}",
         "destination": "dag_run", "url_route": "crm-import-report"},
    ]
