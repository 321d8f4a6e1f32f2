"""docker-compose.yml is shipped for users (no Docker engine here): parse it and check it
matches what the code expects: mounts, connection ids, Airflow version, no passwords."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from crm_migration.model.settings import load_migration_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-init", "airflow-worker")


def test_services_present():
    assert set(AIRFLOW_SERVICES) | {"postgres", "crm-target", "crm-legacy"} <= set(COMPOSE["services"])


def test_airflow_services_mount_what_the_code_reads():
    for name in AIRFLOW_SERVICES:
        svc = COMPOSE["services"][name]
        mounts = dict(v.split(":", 1) for v in svc["volumes"])
        for folder in ("dags", "plugins", "include", "config"):
            assert mounts.get(f"./{folder}") == f"/opt/airflow/{folder}", (name, folder)
            assert (ROOT / folder).is_dir()
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"  # Celery: the profile
        assert env["PYTHONPATH"] == "/opt/airflow/plugins"
        conns = load_migration_config().connections
        for conn_id in conns.model_dump().values():  # every connection the code resolves
            assert f"AIRFLOW_CONN_{conn_id.upper()}" in env, (name, conn_id)
        from crm_migration.dag.alerts import WEBHOOK_ENV

        assert env[WEBHOOK_ENV] == f"${{{WEBHOOK_ENV}:-}}"  # paging's secret comes from the environment


def test_image_matches_pinned_airflow():
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert f"FROM apache/airflow:{pinned}-" in (ROOT / "Dockerfile").read_text()
    assert COMPOSE["services"]["airflow-scheduler"]["image"].endswith(f":{pinned}")


def test_no_literal_passwords():
    text = (ROOT / "docker-compose.yml").read_text()
    for m in re.finditer(r"^\s*(\w*PASSWORD\w*):\s*(\S+)", text, re.M):
        assert m.group(2).startswith("${"), m.group(0)
    for m in re.finditer(r"postgresql(?:\+\w+)?://\w+:([^@]*)@", text):
        assert m.group(1).startswith("${"), m.group(0)


def test_celery_profile_runs_workers_on_the_redis_broker():
    """`--profile celery` adds the broker and the workers; every Airflow service shares the executor,
    broker and result backend settings, as `scripts/airflow_ui.py --celery N` sets them on one machine."""
    services = COMPOSE["services"]
    assert services["redis"]["profiles"] == ["celery"] and services["airflow-worker"]["profiles"] == ["celery"]
    assert services["airflow-worker"]["command"] == "celery worker"
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379" in env[
            "AIRFLOW__CELERY__BROKER_URL"]
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    pinned = re.search(r"^apache-airflow-providers-celery==", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned, "the Celery provider is in the image"
