"""The bottom of the configuration: where config/ is, reading its YAML files, the error every bad file
raises (naming the file and the key), and config/migration.yaml itself. Imports nothing of the package:
the entity files (spec) and the lot files (config) both build on it.

Only yaml and pydantic are imported here (DAG files parse configuration on every pass)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[3]


def config_dir() -> Path:
    """config/ of the repository, or CRM_CONFIG_DIR (tests and rehearsals point it elsewhere)."""
    return Path(os.environ.get("CRM_CONFIG_DIR") or REPO_ROOT / "config")


class ConfigError(ValueError):
    """A configuration file is malformed; the message names the file and the key."""


class Strict(BaseModel):
    """A configuration model: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Connections(Strict):
    legacy: str = "crm_legacy"
    target: str = "crm_target"
    rehearsal: str = "crm_rehearsal"  # a scratch target the nightly rehearsal rebuilds from scratch


class Alerts(Strict):
    """Where a failed task of any crm-cutover DAG, a cutover past its window and a rehearsal forecasting a
    window over budget are paged: any of these, none by default (the log line only)."""

    webhook_url: str | None = Field(None, pattern=r"^https?://", description="POST a JSON message here (a Slack"
                                    " incoming webhook, Teams, PagerDuty's or your own receiver: {text, dag_id,"
                                    " task_id, run_id, kind}); a URL that carries a token is a credential: give it"
                                    " as CRM_ALERT_WEBHOOK_URL in the environment instead, which wins.")
    slack_conn_id: str | None = Field(None, description="An Airflow Slack incoming-webhook connection"
                                      " (apache-airflow-providers-slack installed).")
    emails: tuple[str, ...] = Field((), description="Also e-mail these addresses (Airflow's SMTP, connection"
                                    " smtp_default).")


class Timeouts(Strict):
    task_minutes: float = Field(240, gt=0, le=7 * 24 * 60, description="Every task's execution_timeout: a task"
                                " running longer is failed (and paged), never left hanging.")
    cutover_window_minutes: float = Field(30, gt=0, le=7 * 24 * 60, description="The cutover window's budget:"
                                          " a crm_delta_sync run not finished this long after it was queued pages"
                                          " (an Airflow deadline alert; the run goes on), and a rehearsal forecasting"
                                          " a longer window pages too.")
    rehearsal_minutes: float = Field(720, gt=0, le=7 * 24 * 60, description="The rehearsal's wait for each"
                                     " triggered lot run (its execution_timeout).")


class Rehearsal(Strict):
    schedule: str | None = Field("0 2 * * *", description="Cron (UTC) of the nightly rehearsal; null: only when"
                                 " triggered. A scheduled run that starts late (someone unpaused the DAG, so Airflow"
                                 " creates the last missed slot at once) is skipped, never run.")
    late_start_minutes: float = Field(60, gt=0, description="A scheduled rehearsal starting later than this after"
                                      " its slot is skipped.")
    masks: Literal["near", "opaque"] = Field("near", description="Rehearsals on anonymised data: near (the same"
                                             " quarantines and merges as production; words keep their Soundex"
                                             " classes: pseudonyms) or opaque (keyed random letters: stronger,"
                                             " fuzzy duplicates may not merge).")


class MigrationConfig(Strict):
    connections: Connections = Connections()
    target_schema: str = Field("crm", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                               description="Schema of the new CRM's tables in the target database.")
    report_dir: str = "reports"
    default_retries: int = Field(2, ge=0, le=10)
    failure_emails: tuple[str, ...] = Field(
        (), description="Deprecated: alerts.emails (both are used)."
    )
    alerts: Alerts = Alerts()
    timeouts: Timeouts = Timeouts()
    rehearsal: Rehearsal = Rehearsal()
    retry_delay_seconds: int = Field(60, ge=1)
    watermark_margin_minutes: float = Field(
        5, ge=1, le=1440, description="The watermark is the legacy clock at extract start minus this margin"
                                       " (transactions still open at extract start commit within it).")
    country_aliases: dict[str, str] = Field(
        default_factory=dict, description="Country names the ISO lookup does not know -> ISO alpha-2 code.")
    min_overlap_minutes: float = Field(
        1, ge=0, le=1440, description="The delta sync never reads back less than this before the watermark.")
    corrections_file: str = Field(
        "data_owner/corrections.csv", description="Data owners' corrections (config-relative CSV: entity, legacy_id,"
        " field, value, reason, who), applied at cleanse; crm_migration.data_owner.")
    waivers_file: str = Field(
        "data_owner/waivers.csv", description="Quarantined rows accepted as not migrated (config-relative CSV:"
        " entity, legacy_id or reason_code, reason, approver); the freeze counts them as waived.")


def format_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"{path}: {key}: {e['msg']}")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict:
    try:
        # the C loader when libyaml is there: DAG files parse config on every DAG-processor pass
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: <root>: expected a mapping, got {type(data).__name__}")
    return data


def load_migration_config(path: Path | None = None) -> MigrationConfig:
    path = path or config_dir() / "migration.yaml"
    return _migration_config(str(path), path.stat().st_mtime_ns if path.exists() else 0)


@lru_cache(maxsize=8)
def _migration_config(path: str, stamp: int) -> MigrationConfig:  # stamp: a changed file is read again
    try:
        return MigrationConfig.model_validate(read_yaml(Path(path)))
    except ValidationError as exc:
        raise ConfigError(format_error(Path(path), exc)) from None
