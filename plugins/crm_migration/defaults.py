"""DAG defaults in one place, enforced by tests/test_dag_integrity.py."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from crm_migration.config import MigrationConfig

START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
TAGS = ["crm-cutover"]


def default_args(cfg: MigrationConfig, owner: str) -> dict:
    from crm_migration.tasks import on_failure

    # Tests shorten the delay through the environment; data errors are not retried (see run_stage).
    delay = float(os.environ.get("CRM_RETRY_DELAY_SECONDS", cfg.retry_delay_seconds))
    return {
        "owner": owner,
        "retries": int(os.environ.get("CRM_RETRIES", cfg.default_retries)),
        "retry_delay": timedelta(seconds=delay),
        "on_failure_callback": on_failure,
    }
