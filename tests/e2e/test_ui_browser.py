"""Under the real scheduler: `make airflow`'s script starts Airflow standalone (scheduler with the
LocalExecutor, API server, DAG processor), then

- the nightly rehearsal triggers the real lot DAGs and the delta DAG on its scratch database, on
  anonymised data, and never touches the real target or starts a real lot;
- unpausing the rehearsal does not rehearse (the slot Airflow creates at once is skipped);
- in a real browser (Debian's Chromium driven headless by Playwright), ops are sent to the login page by a
  report link, log in, trigger a lot from its form with the defaults, open the run's "Import report" tab
  inside Airflow and see the funnel chart; an API client without login gets 401; a failed task pages a
  real local HTTP receiver and its log opens on the cause and what to clear; Ctrl-C stops every component.

Screenshots: reports/screenshots/*.png (printed)."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import LEGACY_URI, ROOT
from helpers import Receiver, airflow_env, free_port, fresh_database

sys.path.insert(0, str(ROOT / "scripts"))
from airflow_ui import Launched  # noqa: E402

from crm_migration.model.db import engine, to_sqlalchemy_url

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                                                  reason="Debian's chromium is not installed (.ci/run installs it)")]
SHOTS = ROOT / "reports" / "screenshots"
DATABASES = ("crm_test_ui_target", "crm_test_ui_rehearsal", "crm_test_ui_airflow")


@pytest.fixture(scope="module")
def airflow_ui(legacy_url, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-ui")
    port = free_port()
    target, rehearsal, meta = (fresh_database(d) for d in DATABASES)
    with Receiver() as pager:  # the alerts' webhook: a real HTTP receiver on this machine
        try:
            af = Launched({**airflow_env(home, port, target, rehearsal, meta), "CRM_ALERT_WEBHOOK_URL": pager.url})
        except RuntimeError as exc:
            pytest.fail(str(exc))
        assert af.password in af.text() and f"http://localhost:{port}" in af.text()  # URL and login printed
        af.target, af.rehearsal, af.pager = target, rehearsal, pager
        yield af
        af.stop()  # a test failed before its Ctrl-C


def test_rehearsal_runs_the_real_dags_on_anonymised_data(airflow_ui):
    ui = airflow_ui
    # unpaused (it is paused at creation), Airflow creates last night's slot at once: skipped, no rehearsal
    ui.api("/api/v2/dags/crm_rehearsal", {"is_paused": False}, method="PATCH")
    deadline, runs = time.monotonic() + 60, []
    while not runs and time.monotonic() < deadline:
        runs = ui.api("/api/v2/dags/crm_rehearsal/dagRuns")["dag_runs"]
        time.sleep(2)
    on_time = False
    for late in runs:
        on_time = datetime.now(UTC) - datetime.fromisoformat(late["run_after"]) < timedelta(minutes=61)
        done = ui.wait("crm_rehearsal", late["dag_run_id"], 1200 if on_time else 120)
        assert late["run_type"] == "scheduled" and done["state"] == "success", done
        if not on_time:  # (within an hour of the nightly slot, the run is on time: it rehearses)
            tis = ui.api(f"/api/v2/dags/crm_rehearsal/dagRuns/{urllib.parse.quote(late['dag_run_id'], safe='')}"
                         "/taskInstances")["task_instances"]
            assert {t["task_id"]: t["state"] for t in tis}["rebuild"] == "skipped"
    if not on_time:
        assert not ui.api("/api/v2/dags/~/dagRuns?limit=100&run_type=operator_triggered")["dag_runs"]  # no lot
    # triggered with its defaults (anonymise on): that run is the one tested (left unpaused: a paused
    # DAG's running run would not go on)
    run_id = ui.trigger("crm_rehearsal", {"expected_changes": 500})
    run = ui.wait("crm_rehearsal", run_id, 1200, poll=3)
    assert run["state"] == "success", run
    child = f"rehearsal__{run_id}"
    for dag_id in ("crm_lot_users", "crm_lot_contacts", "crm_lot_activities", "crm_delta_sync"):  # the real DAGs
        assert ui.wait(dag_id, child, 10)["state"] == "success", dag_id
    lot_runs = ui.api("/api/v2/dags/~/dagRuns?limit=100")["dag_runs"]
    nightly = {f"rehearsal__{r['dag_run_id']}" for r in runs} if on_time else set()
    assert {r["dag_run_id"] for r in lot_runs if r["dag_id"].startswith("crm_lot_")} == {child} | nightly  # no lot
    rehearsal = to_sqlalchemy_url(ui.rehearsal)
    with engine(rehearsal).connect() as conn:
        summary = conn.execute(sa.text("SELECT summary FROM rehearsal.history WHERE run_id = :r"),
                               {"r": child}).scalar_one()
        people = conn.execute(sa.text("SELECT legacy_id, last_name, email FROM crm.people")).all()
        merged = conn.execute(sa.text("SELECT count(*) FROM crm_migration.merged WHERE entity = 'contacts'")).scalar()
    assert summary["forecast"]["window_seconds"] > 0 and summary["delta_fixed_seconds"] > 0
    # forecast from the delta path: its fixed cost and a replay of 500 migrated rows as if changed
    assert summary["forecast"]["expected_changes"] == 500 and summary["forecast"]["method"] == "delta replay"
    assert ui.wait("crm_delta_sync", f"{child}__replay", 10)["state"] == "success"
    assert all(c["identity_ok"] for ents in summary["counts"].values() for c in ents.values())
    with engine(to_sqlalchemy_url(LEGACY_URI)).connect() as conn:
        real = dict(conn.execute(sa.text("SELECT id, last_name FROM contacts WHERE last_name IS NOT NULL")).all())
    assert people and not [lid for lid, n, _ in people if real.get(lid) and real[lid].lower() == (n or "").lower()]
    assert merged > 0  # duplicates stayed duplicates under the mask: the dedupe still merged them
    # the leak scan: no personal legacy value longer than 3 characters anywhere in the rehearsal's target,
    # staging, bookkeeping or its runs' reports
    from leak_scan import report_files_of, scan

    files = report_files_of(child, Path(os.environ["CRM_REPORT_DIR"]))  # where the tests' Airflow writes them
    assert len(files) >= 7, files  # every lot's report and the delta's, with their HTML and quarantine CSVs
    leaks = scan(to_sqlalchemy_url(LEGACY_URI), rehearsal, files)
    assert not leaks, f"{len(leaks)} leaks, first: {leaks[:5]}"
    with engine(to_sqlalchemy_url(ui.target)).connect() as conn:  # the real target: never written
        assert conn.execute(sa.text("SELECT count(*) FROM crm.people")).scalar() == 0


def test_ops_day_in_the_airflow_ui(airflow_ui):
    from playwright.sync_api import expect, sync_playwright

    ui = airflow_ui
    SHOTS.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(f"{ui.url}/api/v2/monitor/health", timeout=10) as r:
        assert json.load(r)["scheduler"]["status"] == "healthy"
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
            return None

    plain = urllib.request.build_opener(NoRedirect)
    for path in ("/crm-reports/", "/crm-reports/run?dag_id=crm_lot_users&run_id=x"):
        with pytest.raises(urllib.error.HTTPError) as refused:  # an API client without login: 401
            plain.open(urllib.request.Request(f"{ui.url}{path}", headers={"Accept": "application/json"}), timeout=10)
        assert refused.value.code == 401, path
        with pytest.raises(urllib.error.HTTPError) as sent:  # a browser without login: to the login page
            plain.open(urllib.request.Request(f"{ui.url}{path}", headers={"Accept": "text/html"}), timeout=10)
        assert sent.value.code == 303 and "login" in sent.value.headers["Location"], path
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--headless", "--no-sandbox", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=30_000)  # a loaded CI machine frames the report slowly
        page.goto(f"{ui.url}/crm-reports/")  # a report link opened before logging in: the login page
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(ui.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "login" not in url)
        page.goto(f"{ui.url}/dags/crm_lot_users")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("quarantine_run_id")).to_be_visible()
        page.screenshot(path=str(SHOTS / "1-trigger-form-defaults.png"))
        submit = dialog.get_by_role("button", name="Trigger")
        expect(submit).to_be_enabled()  # the defaults are valid: the form lets the run start
        submit.click()
        deadline, run = time.monotonic() + 300, None
        while time.monotonic() < deadline:  # the form's run: manual (the rehearsal's are operator_triggered)
            runs = [r for r in ui.api("/api/v2/dags/crm_lot_users/dagRuns?limit=50")["dag_runs"]
                    if r["run_type"] == "manual"]
            run = runs[0] if runs else None
            if run and run["state"] in ("success", "failed"):
                break
            time.sleep(2)
        assert run and run["state"] == "success", run
        page.goto(f"{ui.url}/dags/crm_lot_users/runs/{urllib.parse.quote(run['dag_run_id'], safe='')}")
        page.get_by_text("Import report", exact=True).click()
        frame = page.frame_locator("iframe").first
        expect(frame.get_by_text("Outcome: SUCCEEDED")).to_be_visible()
        expect(frame.locator("svg.chart").first).to_be_visible()  # the funnel
        expect(frame.get_by_text("Where every legacy row went")).to_be_visible()
        page.screenshot(path=str(SHOTS / "2-run-import-report-tab.png"), full_page=True)
        page.goto(f"{ui.url}/plugin/crm-import-reports")
        expect(page.frame_locator("iframe").first.get_by_text(run["dag_run_id"])).to_be_visible()
        page.screenshot(path=str(SHOTS / "3-nav-import-reports.png"), full_page=True)
        page.goto(f"{ui.url}/crm-reports/rehearsals")  # the trend across nights (one night here)
        expect(page.locator("svg.chart")).to_be_visible()
        page.screenshot(path=str(SHOTS / "4-rehearsal-trend.png"), full_page=True)
        # a failed task (a retry of a run that does not exist fails at prepare): paged, and its log opens on
        # the cause and what to clear
        failed = ui.trigger("crm_lot_users", {"only_quarantined": True, "quarantine_run_id": "manual__no_such_run"})
        assert ui.wait("crm_lot_users", failed, 300)["state"] == "failed"
        [paged] = ui.pager.wait(lambda m: m["run_id"] == failed and m["task_id"] == "prepare")
        assert paged["kind"] == "task_failed" and "names no run of lot users" in paged["text"], paged
        assert "clear prepare with its downstream tasks" in paged["text"], paged
        quoted = urllib.parse.quote(failed, safe="")
        lines = ui.api(f"/api/v2/dags/crm_lot_users/dagRuns/{quoted}/taskInstances/prepare/logs/1")["content"]
        events = [str(x.get("event", "")) for x in lines if str(x.get("event", "")).strip()
                  and not str(x.get("event")).startswith(("::group::", "::endgroup::"))]
        assert "names no run of lot users" in events[-1] and "clear prepare" in events[-1], events[-5:]
        page.goto(f"{ui.url}/dags/crm_lot_users/runs/{quoted}/tasks/prepare")
        cause = page.get_by_text("clear prepare with its downstream tasks").last
        expect(cause).to_be_in_viewport()  # where the log viewer opens, not two screens up
        page.screenshot(path=str(SHOTS / "5-failed-task-log.png"), full_page=True)
        browser.close()
    print("\nscreenshots:", *sorted(str(s) for s in SHOTS.glob("*.png")), sep="\n  ")
    with engine(to_sqlalchemy_url(ui.target)).connect() as conn:  # from outside: the users are there
        users = conn.execute(sa.text("SELECT count(*) FROM crm.owners")).scalar_one()
    with engine(to_sqlalchemy_url(LEGACY_URI)).connect() as conn:
        legacy_users = conn.execute(sa.text("SELECT count(*) FROM users WHERE deleted = 0")).scalar_one()
    assert users >= legacy_users > 0
    left = ui.stop()  # Ctrl-C
    assert left == [], f"components left running after Ctrl-C: {left}"
