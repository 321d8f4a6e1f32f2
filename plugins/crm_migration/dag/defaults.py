"""DAG defaults in one place, enforced by tests/unit/test_dag_integrity.py."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, UTC

from crm_migration.model.settings import MigrationConfig

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
TAGS = ["crm-cutover"]


def failure_callbacks(cfg: MigrationConfig) -> list:
    """The log summary always; an e-mail through Airflow's SMTP notifier when addresses are configured."""
    from crm_migration.dag.tasks import on_failure

    callbacks: list = [on_failure]
    if cfg.failure_emails:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        callbacks.append(SmtpNotifier(
            to=list(cfg.failure_emails),
            subject="[crm-cutover] {{ ti.dag_id }}.{{ ti.task_id }} failed ({{ run_id }})",
            html_content="Task {{ ti.task_id }} of {{ ti.dag_id }} failed in run {{ run_id }}."
                         " Every task rewrites only its own slice: fix the cause and clear it.",
        ))
    return callbacks


def default_args(cfg: MigrationConfig, owner: str) -> dict:

    # Tests shorten the delay through the environment; data errors are not retried (tasks.fail_fast).
    delay = float(os.environ.get("CRM_RETRY_DELAY_SECONDS", cfg.retry_delay_seconds))
    return {
        "owner": owner,
        "retries": int(os.environ.get("CRM_RETRIES", cfg.default_retries)),
        "retry_delay": timedelta(seconds=delay),
        "on_failure_callback": failure_callbacks(cfg),
    }


def crm_dag(dag_id: str, *, owner: str = "crm-migration", tags: tuple[str, ...] = (), **kwargs):
    """A DAG with the house defaults: no catchup, one active run, retries and failure callbacks
    from config/migration.yaml, the crm-cutover tag. kwargs: description, schedule, doc_md, params."""
    from airflow.sdk import DAG

    from crm_migration.model.settings import load_migration_config

    # the schedule comes in kwargs (ruff's AIR002 cannot see it there)
    return DAG(dag_id=dag_id, start_date=START_DATE, catchup=False, max_active_runs=1,  # noqa: AIR002
               default_args=default_args(load_migration_config(), owner), tags=[*TAGS, *tags], **kwargs)
