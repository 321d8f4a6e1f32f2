"""Paging: a failed task of any crm-cutover DAG, a cutover run past its window (an Airflow deadline alert) and a
rehearsal forecasting a window over budget reach the people on call, through what config/migration.yaml's
`alerts` names -- a webhook (JSON POST: Slack incoming webhooks, Teams, a pager's events endpoint, your own
receiver), a Slack connection, e-mail addresses -- any of them, none by default (the log line only).

Paging never raises: an alert that cannot be delivered is logged as such, and the failure it was about
stays the task's failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import urllib.request
from datetime import timedelta
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from crm_migration.model.errors import first_line
from crm_migration.model.settings import ConfigError, MigrationConfig, config_dir, load_migration_config

log = logging.getLogger(__name__)
WEBHOOK_ENV = "CRM_ALERT_WEBHOOK_URL"  # wins over alerts.webhook_url: a URL with a token is a credential


def webhook_url(cfg: MigrationConfig) -> str | None:
    return os.environ.get(WEBHOOK_ENV) or cfg.alerts.webhook_url


def emails(cfg: MigrationConfig) -> list[str]:
    return list(dict.fromkeys([*cfg.alerts.emails, *cfg.failure_emails]))


def post_webhook(url: str, message: dict, timeout: float = 10) -> bool:
    """POST the message as JSON; True when the receiver answered 2xx."""
    request = urllib.request.Request(url, data=json.dumps(message, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "crm-cutover"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - an http(s) URL by config
            ok = 200 <= response.status < 300
    except Exception as exc:  # noqa: BLE001 - paging never raises
        log.error("alert NOT delivered to the webhook: %s", exc)
        return False
    log.info("alert delivered to the webhook (%s)", "ok" if ok else "refused")
    return ok


def _slack(conn_id: str, text: str) -> bool:
    try:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        SlackWebhookNotifier(slack_webhook_conn_id=conn_id, text=text).notify({})
    except Exception as exc:  # noqa: BLE001 - paging never raises
        log.error("alert NOT delivered to Slack (%s): %s", conn_id, exc)
        return False
    return True


def _email(to: list[str], subject: str, text: str) -> bool:
    try:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(to=to, subject=subject, html_content=f"<pre>{text}</pre>").notify({})
    except Exception as exc:  # noqa: BLE001 - paging never raises
        log.error("alert NOT e-mailed to %s: %s", ", ".join(to), exc)
        return False
    return True


def page(kind: str, text: str, *, dag_id: str | None, run_id: str | None, task_id: str | None = None,
         cfg: MigrationConfig | None = None) -> dict[str, bool]:
    """Send one alert to every configured destination; returns destination -> delivered. kind: task_failed,
    deadline_missed, forecast_over_budget."""
    cfg = cfg or load_migration_config()
    message = {"text": f"[crm-cutover] {text}", "kind": kind, "dag_id": dag_id, "task_id": task_id,
               "run_id": run_id}
    sent: dict[str, bool] = {}
    if url := webhook_url(cfg):
        sent["webhook"] = post_webhook(url, message)
    if cfg.alerts.slack_conn_id:
        sent["slack"] = _slack(cfg.alerts.slack_conn_id, message["text"])
    if to := emails(cfg):
        sent["email"] = _email(to, f"[crm-cutover] {kind.replace('_', ' ')}: {dag_id} {task_id or ''}".strip(),
                               text)
    if not sent:
        log.warning("no alert destination configured (config/migration.yaml: alerts): %s", text)
    return sent


def configured(cfg: MigrationConfig) -> bool:
    """Any destination: then DAGs carry the notifier. A Slack connection without Slack's provider fails
    here, at parse time, naming the key."""
    if cfg.alerts.slack_conn_id:
        try:
            import airflow.providers.slack  # noqa: F401
        except ImportError:
            raise ConfigError(f"{config_dir() / 'migration.yaml'}: alerts.slack_conn_id: needs"
                              " apache-airflow-providers-slack (or give the Slack webhook as alerts.webhook_url)"
                              ) from None
    return bool(webhook_url(cfg) or cfg.alerts.slack_conn_id or emails(cfg))


class PageOnFailure(BaseNotifier):
    """A failed task's alert: the DAG, the task, the run, and the failure's first line (the cause and what
    to clear, as tasks.fail_fast words it)."""

    def notify(self, context: Any) -> None:
        ti = context.get("ti") or context.get("task_instance")
        exc = context.get("exception")
        cause = first_line(exc, 1500) if exc else "no exception"
        dag_id, task_id = getattr(ti, "dag_id", None), getattr(ti, "task_id", None)
        page("task_failed", f"{dag_id}.{task_id} failed in run {context.get('run_id')}: {cause}",
             dag_id=dag_id, run_id=context.get("run_id"), task_id=task_id)


async def deadline_missed(budget_minutes: float, context: dict | None = None) -> None:
    """The delta DAG's deadline alert (Airflow runs it in the triggerer): the cutover run is still not done
    `budget_minutes` after it was queued. The run goes on; people are paged."""
    run = (context or {}).get("dag_run") or {}
    dag_id, run_id = run.get("dag_id", "crm_delta_sync"), run.get("dag_run_id") or run.get("run_id")
    text = (f"{dag_id} run {run_id} is past the cutover window's budget ({budget_minutes:g} min since it was"
            " queued) and still not done: open the run, see which entity the sync log names last")
    await asyncio.to_thread(page, "deadline_missed", text, dag_id=dag_id, run_id=run_id)


def forecast_over_budget(forecast: dict, run_id: str | None, cfg: MigrationConfig | None = None) -> bool:
    """A rehearsal's forecast window over the cutover window's budget pages, as a missed deadline does."""
    cfg = cfg or load_migration_config()
    window, budget = forecast["window_seconds"], cfg.timeouts.cutover_window_minutes
    if window <= budget * 60:
        return False
    text = (f"the rehearsal forecasts a cutover window of {window:,.0f} s for {forecast['expected_changes']:,}"
            f" changed rows, over its budget of {budget:g} min (timeouts.cutover_window_minutes): plan a longer"
            " window, more deltas before the freeze, or a faster path")
    log.warning("%s", text)
    page("forecast_over_budget", text, dag_id="crm_rehearsal", run_id=run_id, task_id="compare_and_forecast",
         cfg=cfg)
    return True


def in_dag_test() -> bool:
    """This process runs DAGs by `airflow dags test` (argv: the demo) or dag.test() (CRM_DAG_TEST=1: the tests)."""
    return os.environ.get("CRM_DAG_TEST") == "1" or sys.argv[1:3] == ["dags", "test"]


def deadline(cfg: MigrationConfig) -> Any:
    """crm_delta_sync's deadline alert: the cutover window budget after the run was queued. None under
    `dags test` / dag.test(): Airflow 3.3.2 fails such a run at its end when its DAG has a deadline
    (DagRun.update_state reads the alert unserialised), and nothing would watch the deadline there anyway."""
    if in_dag_test():
        return None
    minutes = cfg.timeouts.cutover_window_minutes
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(minutes=minutes),
                         callback=AsyncCallback(deadline_missed, kwargs={"budget_minutes": minutes}))
