"""The import report: JSON + HTML with masked samples, and the Airflow UI plugin that serves it."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from test_stages_db import LOTS, _pipeline

from crm_migration.report import make_report, mask_value


def test_mask_value():
    assert mask_value("email", "jean.dupont@example.fr") == "j***@e***"
    assert mask_value("last_name", "Dupont") == "D***"
    assert mask_value("phone_work", "+33156133890") == "**********90"
    assert mask_value("lead_source", "Web Site") == "Web Site"


def test_report_html_and_plugin(legacy_url, target_url, tmp_path):
    _pipeline(legacy_url, target_url, "report_run")
    out = make_report(target_url, LOTS["contacts"], "report_run", False, str(tmp_path), legacy_url=legacy_url)
    report = json.loads(open(out["path"]).read())
    c = report["entities"]["contacts"]
    assert c["identity_ok"] and c["quarantine_samples"] and c["merge_examples"]
    html = open(out["path"].replace(".json", ".html")).read()
    assert "Every legacy row accounted for" in html and "holds" in html
    assert "EMAIL_INVALID" in html
    emails = re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", html)
    assert emails == [], f"unmasked e-mail addresses in the report: {emails[:3]}"

    import crm_reports_plugin

    assert crm_reports_plugin.CrmReportsPlugin.fastapi_apps[0]["url_prefix"] == "/crm-reports"
    client = TestClient(crm_reports_plugin.app)
    index = client.get("/")
    assert index.status_code == 200 and "report_run" in index.text
    page = client.get("/run", params={"dag_id": "crm_lot_contacts", "run_id": "report_run"})
    assert page.status_code == 200 and "Import report contacts / report_run" in page.text
    assert client.get("/run", params={"dag_id": "crm_lot_contacts", "run_id": "nope"}).status_code == 404


def test_airflow_loads_only_the_ui_plugin_from_plugins_folder(airflow_db):
    """plugins/.airflowignore keeps Airflow from importing crm_migration/*.py as top-level modules
    (a module named 'config' or 'db' in sys.modules would shadow others, and slow every worker)."""
    import subprocess
    import sys

    code = ("import sys\nfrom airflow import plugins_manager as pm\npm.ensure_plugins_loaded()\n"
            "print(sorted(m for m in ('config', 'db', 'cleanse', 'tasks', 'crm_reports_plugin') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['crm_reports_plugin']"
