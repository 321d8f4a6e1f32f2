"""DAG defaults in one place, enforced by tests/unit/test_dag_integrity.py."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, UTC

from crm_migration.model.settings import MigrationConfig

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
TAGS = ["crm-cutover"]


def failure_callbacks(cfg: MigrationConfig) -> list:
    """A failed task pages (crm_migration.dag.alerts: webhook, Slack, e-mail, as config/migration.yaml's
    `alerts` says), then logs its one line for the person on call: that line is the last of the task's log,
    where Airflow's log viewer opens."""
    from crm_migration.dag import alerts
    from crm_migration.dag.tasks import on_failure

    return [alerts.PageOnFailure(), on_failure] if alerts.configured(cfg) else [on_failure]


def default_args(cfg: MigrationConfig, owner: str) -> dict:

    # Tests shorten the delay through the environment; data errors are not retried (tasks.fail_fast).
    delay = float(os.environ.get("CRM_RETRY_DELAY_SECONDS", cfg.retry_delay_seconds))
    return {
        "owner": owner,
        "retries": int(os.environ.get("CRM_RETRIES", cfg.default_retries)),
        "retry_delay": timedelta(seconds=delay),
        "execution_timeout": timedelta(minutes=cfg.timeouts.task_minutes),
        "on_failure_callback": failure_callbacks(cfg),
    }


def crm_dag(dag_id: str, *, owner: str = "crm-migration", tags: tuple[str, ...] = (), **kwargs):
    """A DAG with the house defaults: no catchup, one active run, retries, timeouts and failure callbacks
    (paging) from config/migration.yaml, the crm-cutover tag. kwargs: description, schedule, doc_md, params,
    deadline."""
    from airflow.sdk import DAG

    from crm_migration.model.settings import load_migration_config

    # the schedule comes in kwargs (ruff's AIR002 cannot see it there)
    return DAG(dag_id=dag_id, start_date=START_DATE, catchup=False, max_active_runs=1,  # noqa: AIR002
               default_args=default_args(load_migration_config(), owner), tags=[*TAGS, *tags], **kwargs)
