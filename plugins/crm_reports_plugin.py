"""Airflow UI plugin: the import reports, as a page in the nav and as a tab on every DAG run.

Served by a small FastAPI app mounted at /crm-reports on the API server; it reads
crm_migration.run_report through the crm_target connection. Like every plugin FastAPI app,
it is not behind Airflow's auth: expose the API server only where the reports may be read.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse

app = FastAPI(title="CRM import reports")


def _lot_of(dag_id: str) -> str:
    if dag_id.startswith("crm_lot_"):
        return dag_id.removeprefix("crm_lot_")
    return {"crm_delta_sync": "delta", "crm_rollback": "rollback"}.get(dag_id, dag_id)


@app.get("/", response_class=HTMLResponse)
def index() -> str:
    from html import escape

    import sqlalchemy as sa

    from crm_migration.db import connection_url, engine

    with engine(connection_url("crm_target")).connect() as conn:
        rows = conn.execute(sa.text("SELECT lot_id, run_id, identity_ok, dry_run, created_at FROM"
                                    " crm_migration.run_report ORDER BY created_at DESC LIMIT 200")).all()
    items = "".join(
        f"<tr><td>{escape(r.lot_id)}</td><td><a href='run?lot_id={escape(r.lot_id)}&run_id={escape(r.run_id)}'>"
        f"{escape(r.run_id)}</a></td><td>{'holds' if r.identity_ok else 'BROKEN'}</td>"
        f"<td>{'yes' if r.dry_run else ''}</td><td>{r.created_at:%Y-%m-%d %H:%M}</td></tr>" for r in rows)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>CRM import reports</title></head><body>"
            "<h1>CRM import reports</h1><table border=1 cellpadding=4><tr><th>lot</th><th>run</th>"
            f"<th>identity</th><th>dry run</th><th>at</th></tr>{items}</table></body></html>")


@app.get("/run", response_class=HTMLResponse)
def run(run_id: str, lot_id: str | None = None, dag_id: str | None = None) -> str:
    import sqlalchemy as sa

    from crm_migration.db import connection_url, engine
    from crm_migration.report_html import render_html

    lot = lot_id or _lot_of(dag_id or "")
    with engine(connection_url("crm_target")).connect() as conn:
        report = conn.execute(sa.text("SELECT report FROM crm_migration.run_report WHERE lot_id = :l AND run_id = :r"),
                              {"l": lot, "r": run_id}).scalar()
    if report is None:
        raise HTTPException(404, f"no report for lot {lot!r} run {run_id!r} (yet): the report task writes it")
    return render_html(report)


class CrmReportsPlugin(AirflowPlugin):
    name = "crm_reports"
    fastapi_apps = [{"app": app, "url_prefix": "/crm-reports", "name": "CRM import reports"}]
    external_views = [
        {"name": "CRM import reports", "href": "crm-reports/", "destination": "nav", "category": "browse"},
        {"name": "Import report", "href": "crm-reports/run?dag_id={DAG_ID}&run_id={RUN_ID}",
         "destination": "dag_run"},
    ]
