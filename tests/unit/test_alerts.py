"""Paging, against a real local HTTP receiver (what a pager or Slack's webhook is to the product): a failed
task's notifier, the cutover's deadline alert and a rehearsal forecast over budget all reach it; the DAGs
carry the timeouts and the deadline config/migration.yaml gives."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.dag_processing.dagbag import DagBag
from helpers import Receiver

from crm_migration.dag import alerts
from crm_migration.dag.defaults import failure_callbacks
from crm_migration.dag.tasks import on_call_message, on_failure
from crm_migration.ops.rehearsal import forecast
from crm_migration.model.settings import ConfigError, load_migration_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def receiver(monkeypatch):
    with Receiver() as r:
        monkeypatch.setenv(alerts.WEBHOOK_ENV, r.url)
        yield r


def test_a_failed_task_pages_with_its_cause_and_what_to_clear(receiver):
    callbacks = failure_callbacks(load_migration_config())
    assert isinstance(callbacks[0], alerts.PageOnFailure) and callbacks[-1] is on_failure  # the log line last
    cause = on_call_message(ValueError("extract query failed: column phone_work missing"), "extract_contacts")
    ti = SimpleNamespace(dag_id="crm_lot_contacts", task_id="extract_contacts")
    callbacks[0]({"ti": ti, "run_id": "manual__1", "exception": RuntimeError(cause)})  # as Airflow calls it
    [message] = receiver.received
    assert message["kind"] == "task_failed" and message["dag_id"] == "crm_lot_contacts"
    assert message["task_id"] == "extract_contacts" and message["run_id"] == "manual__1"
    assert "column phone_work missing" in message["text"] and "clear extract_contacts" in message["text"]


def test_the_cutover_deadline_pages(receiver, monkeypatch):
    monkeypatch.delenv("CRM_DAG_TEST")
    budget = load_migration_config().timeouts.cutover_window_minutes
    alert = alerts.deadline(load_migration_config())
    assert alert.interval == timedelta(minutes=budget) and alert.callback.path.endswith("alerts.deadline_missed")
    asyncio.run(alerts.deadline_missed(**alert.callback.kwargs, context={
        "dag_run": {"dag_id": "crm_delta_sync", "dag_run_id": "manual__cutover"}}))  # as the triggerer does
    [message] = receiver.received
    assert message["kind"] == "deadline_missed" and message["run_id"] == "manual__cutover"
    assert f"{budget:g} min" in message["text"]


def test_nothing_configured_pages_nothing_and_an_unreachable_receiver_never_raises(monkeypatch, caplog):
    monkeypatch.delenv(alerts.WEBHOOK_ENV, raising=False)
    assert failure_callbacks(load_migration_config()) == [on_failure]
    monkeypatch.setenv(alerts.WEBHOOK_ENV, "http://127.0.0.1:9/nobody")  # discard port: refused
    assert alerts.page("task_failed", "x", dag_id="d", run_id="r") == {"webhook": False}
    assert "NOT delivered" in caplog.text


def test_alert_settings_are_validated(tmp_path):
    base = (ROOT / "config" / "migration.yaml").read_text()
    path = tmp_path / "migration.yaml"
    path.write_text(base.replace("webhook_url: null", "webhook_url: ftp://pager"))
    with pytest.raises(ConfigError, match=r"alerts\.webhook_url"):
        load_migration_config(path)
    path.write_text(base.replace("emails: []", "emails: [oncall@example.com]"))
    cfg = load_migration_config(path)
    assert alerts.emails(cfg) == ["oncall@example.com"] and alerts.configured(cfg)
    path.write_text(base.replace("slack_conn_id: null", "slack_conn_id: slack_oncall"))
    with pytest.raises(ConfigError, match="alerts.slack_conn_id: needs apache-airflow-providers-slack"):
        alerts.configured(load_migration_config(path))


def test_every_task_has_the_configured_timeout_and_the_delta_dag_its_deadline(monkeypatch):
    monkeypatch.delenv("CRM_DAG_TEST")  # as the DAG processor parses it (the tests' own dag.test() runs go without)

    cfg = load_migration_config()
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    for dag in bag.dags.values():
        for t in dag.tasks:
            rehearses = t.task_id.startswith("rehearse_")
            expected = cfg.timeouts.rehearsal_minutes if rehearses else cfg.timeouts.task_minutes
            assert t.execution_timeout == timedelta(minutes=expected), (dag.dag_id, t.task_id)
    [deadline] = bag.dags["crm_delta_sync"].deadline
    assert deadline.interval == timedelta(minutes=cfg.timeouts.cutover_window_minutes)


def test_a_forecast_over_budget_pages_and_the_forecast_is_the_delta_paths(receiver):
    measured = {"delta_fixed_seconds": 4.0, "replay_seconds": 24.0, "migrated_rows": 5_000, "timings": {}}
    f = forecast(measured, 10_000)  # 5,000 replayed: 20 s for 5,000 rows on top of the fixed 4 s
    assert f["method"] == "delta replay" and f["replayed_rows"] == 5_000 and f["window_seconds"] == 44.0
    assert forecast(measured, 5_000)["window_seconds"] == 24.0  # as many replayed as expected: the replay's window
    budget = load_migration_config().timeouts.cutover_window_minutes * 60
    assert not alerts.forecast_over_budget({**f, "window_seconds": budget}, "r1") and not receiver.received
    assert alerts.forecast_over_budget({**f, "window_seconds": budget + 1}, "r2")
    [message] = receiver.received
    assert message["kind"] == "forecast_over_budget" and message["run_id"] == "r2" and "10,000" in message["text"]
