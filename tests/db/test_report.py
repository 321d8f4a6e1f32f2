"""The import report: JSON + HTML with masked samples, and the Airflow UI plugin that serves it."""

from __future__ import annotations

from helpers import LOTS, run_pipeline
import csv
import io
import json
import re
from pathlib import Path

import sqlalchemy as sa

from crm_migration.model.db import engine
from crm_migration.model.masking import mask_id, mask_value, scrub
from crm_migration.reports.report import make_report


def test_opaque_ids_are_never_masked_personal_values_always_are():
    uid = "06d1326e-4b2a-4c79-979d-1a2b3c4d5e6f"
    assert mask_id(uid) == uid and mask_id("10023456") == "10023456"  # before: 06d1326e-****-****-*79d-...
    assert mask_id("jean@example.fr") == "j***@e***"  # a CRM keyed on e-mails
    detail = f"account_legacy_id='{uid}' not found; phone '+33 1 56 13 38 90', mail jean@example.fr"
    assert scrub(detail) == (f"account_legacy_id='{uid}' not found; phone '+** * ** ** ** 90', mail j***@***")


def test_mask_value():
    assert mask_value("email", "jean.dupont@example.fr") == "j***@e***"
    assert mask_value("last_name", "Dupont") == "D***"
    assert mask_value("phone_work", "+33156133890") == "**********90"
    assert mask_value("lead_source", "Web Site") == "Web Site"


def test_report_html_and_plugin(legacy_url, target_url, tmp_path):
    run_pipeline(legacy_url, target_url, "report_run")
    out = make_report(target_url, LOTS["contacts"], "report_run", False, str(tmp_path), legacy_url=legacy_url)
    report = json.loads(Path(out["path"]).read_text())
    c = report["entities"]["contacts"]
    assert c["identity_ok"] and c["quarantine_samples"] and c["merge_examples"]
    html = Path(out["path"].replace(".json", ".html")).read_text()
    assert "Every legacy row accounted for" in html and "holds" in html
    assert "EMAIL_INVALID" in html
    emails = re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", html)
    assert emails == [], f"unmasked e-mail addresses in the report: {emails[:3]}"

    assert "<svg" in html and "Where every legacy row went" in html and "Time per stage" in html  # charts
    assert "Outcome:" in html and report["outcome"]["verdict"] == "SUCCEEDED"


def test_report_pages_inside_airflow_behind_its_login(legacy_url, target_url, tmp_path, airflow_api, monkeypatch):
    """The plugin's pages, served by Airflow's own API app: refused without a login, a '+' in a run id
    encoded in the links, the outcome on top, a clear 503 (not a 500) when the target is down."""
    import crm_reports_plugin

    run_id = "manual__2026-11-23T10:00:00+00:00"
    run_pipeline(legacy_url, target_url, run_id)
    make_report(target_url, LOTS["contacts"], run_id, False, str(tmp_path), legacy_url=legacy_url,
                failed_tasks=["gate_dedupe_contacts"])
    client, token = airflow_api
    auth = {"Authorization": f"Bearer {token}"}
    assert {v["url_route"] for v in crm_reports_plugin.CrmReportsPlugin.external_views} == {
        "crm-import-reports", "crm-import-report"}  # shown inside the Airflow UI
    for path in ("/crm-reports/", "/crm-reports/run?dag_id=crm_lot_contacts&run_id=x"):
        assert client.get(path).status_code == 401, path  # no login, no report
    assert client.get("/crm-reports/", headers={"Authorization": "Bearer forged"}).status_code in (401, 403)
    for path in ("/crm-reports/openapi.json", "/crm-reports/docs"):
        assert client.get(path, headers=auth).status_code == 404
    index = client.get("/crm-reports/", headers=auth)
    assert index.status_code == 200 and "FAILED at gate_dedupe_contacts" in index.text
    link = re.search(r"href='(run\?[^']*contacts[^']*)'", index.text).group(1).replace("&amp;", "&")
    assert "%2B00%3A00" in link  # the '+' of the run id, encoded
    page = client.get(f"/crm-reports/{link}", headers=auth)
    assert page.status_code == 200 and f"Import report contacts / {run_id}" in page.text
    assert page.text.index("Outcome:") < page.text.index("Where every legacy row went")
    assert "FAILED at gate_dedupe_contacts" in page.text
    # the quarantine for data owners, one CSV per entity and reason, behind the same login
    csv_link = re.search(r"href='(quarantine\.csv\?[^']*EMAIL_INVALID[^']*)'", page.text).group(1).replace("&amp;", "&")
    assert client.get(f"/crm-reports/{csv_link}").status_code == 401
    got = client.get(f"/crm-reports/{csv_link}", headers=auth)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(got.text)))
    assert lines and all(r["reason_code"] == "EMAIL_INVALID" and "*" not in r["legacy_id"] for r in lines)
    assert re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", got.text) == []  # personal values masked
    assert client.get("/crm-reports/run", params={"dag_id": "crm_lot_contacts", "run_id": "nope"},
                      headers=auth).status_code == 404
    monkeypatch.setenv("AIRFLOW_CONN_CRM_TARGET", target_url.rsplit("/", 1)[0] + "/crm_no_such_database")
    down = client.get("/crm-reports/", headers=auth)
    assert down.status_code == 503 and "does not answer" in down.text


def test_airflow_loads_only_the_ui_plugin_from_plugins_folder(airflow_db):
    """plugins/.airflowignore keeps Airflow from importing crm_migration/*.py as top-level modules
    (a module named 'config' or 'db' in sys.modules would shadow others, and slow every worker)."""
    import subprocess
    import sys

    code = ("import sys\nfrom airflow import plugins_manager as pm\npm.ensure_plugins_loaded()\n"
            "print(sorted(m for m in ('config', 'db', 'cleanse', 'tasks', 'crm_reports_plugin') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['crm_reports_plugin']"


def test_personal_data_is_masked_in_every_report_output(target_url, tmp_path):
    """Issue 9: a malformed e-mail reached the reports unmasked; cities, postcodes, streets and websites
    were never masked. Hostile values go through the real stages; every output is grepped for them."""
    from conftest import legacy_copy

    _, legacy = legacy_copy("crm_test_legacy_pii")
    secrets = {"email": "jane  doe@@secret-broken..example", "phone": "+33 6 98 76 54 32",
               "city": "Zyxwvutcity", "name": "Qwertyuiopname", "street": "42 Rue Secretissime",
               "postcode": "75987", "website": "www.secret-site-zz.example"}
    with engine(legacy).begin() as conn:
        c1, c2 = [r[0] for r in conn.exec_driver_sql("SELECT id FROM contacts WHERE deleted = 0 ORDER BY id LIMIT 2")]
        a1 = conn.exec_driver_sql("SELECT id FROM accounts WHERE deleted = 0 ORDER BY id LIMIT 1").scalar_one()
        conn.execute(sa.text("DELETE FROM email_addr_bean_rel WHERE bean_id = :c"), {"c": c1})
        conn.execute(sa.text("INSERT INTO email_addresses (id, email_address) VALUES ('e-pii', :m)"),
                     {"m": secrets["email"]})
        conn.execute(sa.text("INSERT INTO email_addr_bean_rel (id, email_address_id, bean_id, bean_module,"
                             " primary_address) VALUES ('r-pii', 'e-pii', :c, 'Contacts', 1)"), {"c": c1})
        conn.execute(sa.text("UPDATE contacts SET primary_address_city = :city, first_name = :name,"
                             " phone_work = :phone, date_modified = now() AT TIME ZONE 'UTC' WHERE id = :c"),
                     {**secrets, "c": c1})
        conn.execute(sa.text("UPDATE contacts SET last_name = NULL, first_name = :name, phone_mobile = :phone,"
                             " primary_address_city = :city, date_modified = now() AT TIME ZONE 'UTC' WHERE id = :c"),
                     {**secrets, "c": c2})
        conn.execute(sa.text("UPDATE accounts SET name = NULL, billing_address_street = :street,"
                             " billing_address_postalcode = :postcode, billing_address_city = :city,"
                             " website = :website, phone_office = :phone, date_modified = now() AT TIME ZONE 'UTC'"
                             " WHERE id = :a"), {**secrets, "a": a1})
    engine(legacy).dispose()
    run_pipeline(legacy, target_url, "pii_run", lots=[LOTS["accounts"], LOTS["contacts"]])
    outputs = []
    for lot_id in ("accounts", "contacts"):
        out = make_report(target_url, LOTS[lot_id], "pii_run", False, str(tmp_path), legacy_url=legacy)
        outputs += [Path(out["path"]).read_text(), Path(out["path"].replace(".json", ".html")).read_text(),
                    out["summary"]]
    with engine(target_url).connect() as conn:
        outputs += [r[0] for r in conn.exec_driver_sql(
            "SELECT report::text FROM crm_migration.run_report WHERE run_id = 'pii_run'")]
        reasons = {r[0] for r in conn.exec_driver_sql(
            "SELECT reason_code FROM stg.quarantine WHERE run_id = 'pii_run' AND legacy_id = ANY(ARRAY["
            f"'{c1}', '{c2}', '{a1}'])")}
    assert {"EMAIL_INVALID", "REQUIRED_MISSING"} <= reasons  # the hostile rows are in the samples
    text = "\n".join(outputs)
    needles = [*secrets.values(), " ".join(secrets["email"].split()), "secret-broken", "98 76 54",
               "987654", "Secretissime", "Zyxwvut", "Qwertyuiop"]
    leaked = [n for n in needles if n.lower() in text.lower()]
    assert leaked == [], f"personal data in the report outputs: {leaked}"
