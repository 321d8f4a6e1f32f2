"""DAG integrity: the expected DAG ids, no import errors, defaults enforced, parse time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_DAG_IDS = {"crm_lot_users", "crm_lot_accounts", "crm_lot_contacts", "crm_lot_opportunities", "crm_lot_leads",
                    "crm_lot_activities", "crm_delta_sync", "crm_rollback", "crm_rehearsal"}
DOC_SECTIONS = ("### What it does", "### Parameters", "### How to rerun a failed task", "### How to roll back",
                "### What to check in the report")


def test_expected_dag_ids_and_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED_DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAG_IDS))
def test_defaults_enforced(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert "crm-cutover" in dag.tags
    for section in DOC_SECTIONS:
        assert section in dag.doc_md, section
    for task in dag.tasks:
        assert task.owner == "crm-migration", task.task_id
        assert task.on_failure_callback, task.task_id
        assert task.retries == 0  # CRM_RETRIES=0 in tests; config default applies otherwise
    if "report" in dag.task_ids:
        assert dag.get_task("report").trigger_rule == "all_done"
    assert dag.get_task("watcher").trigger_rule == "one_failed"
    assert set(dag.get_task("watcher").upstream_task_ids) == {t.task_id for t in dag.tasks} - {"watcher"}


def test_gate_between_every_two_stages(dagbag):
    dag = dagbag.get_dag("crm_lot_contacts")
    chain = ["prepare", "extract_contacts", "gate_extract_contacts", "cleanse_contacts", "gate_cleanse_contacts",
             "dedupe_prepare_contacts", "dedupe_score_contacts", "dedupe_contacts", "gate_dedupe_contacts",
             "transform_contacts", "gate_transform_contacts",
             "load_contacts", "gate_load_contacts", "publish_loaded", "report"]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert upstream in dag.get_task(downstream).upstream_task_ids, (upstream, downstream)


@pytest.mark.parametrize("conf, ok", [
    ({}, True),
    ({"sample_fraction": 0.1, "dry_run": True}, True),
    ({"sample_fraction": 0}, False),
    ({"sample_fraction": 1.5}, False),
    ({"sample_fraction": "all"}, False),
    ({"dry_run": "yes"}, False),
])
def test_trigger_params_are_validated(dagbag, conf, ok):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    def resolve():
        params = ParamsDict(dagbag.get_dag("crm_lot_accounts").params)
        params.update(conf)
        return params.validate()

    if ok:
        resolve()
    else:
        with pytest.raises(ParamValidationError, match="Invalid input for param"):
            resolve()


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAG_IDS))
def test_every_dag_triggers_with_its_defaults(dagbag, dag_id):
    """The trigger form enables its button only when every default is valid, and treats an empty-string
    default as missing: no "" defaults (optional text is ["null", "string"] with None), every default valid
    against its schema, every number bounded so the form itself refuses a bad value."""
    from airflow.sdk.definitions.param import ParamsDict

    params = ParamsDict(dagbag.get_dag(dag_id).params)
    params.validate()
    for name in params:
        param = params.get_param(name)
        assert param.value != "", f"{dag_id}.{name}: an empty-string default disables the form's Trigger button"
        types = param.schema.get("type")
        types = types if isinstance(types, list) else [types]
        if "number" in types or "integer" in types:
            assert "minimum" in param.schema and "maximum" in param.schema, f"{dag_id}.{name} is not bounded"
            described = param.description or ""  # Airflow's number field clamps silently: the form says the bounds
            assert all(str(b) in described or f"{b:,}" in described
                       for b in (param.schema["minimum"], param.schema["maximum"])), (dag_id, name, described)
        if param.value is None:
            assert "null" in types, f"{dag_id}.{name}: default None but null is not allowed"


@pytest.mark.parametrize("dag_id, conf", [
    ("crm_lot_accounts", {"sample_fraction": -1}),
    ("crm_lot_accounts", {"quarantine_run_id": "x'; drop table"}),
    ("crm_delta_sync", {"entities": ["contacts", "invoices"]}),
    ("crm_delta_sync", {"entities": []}),
    ("crm_delta_sync", {"overlap_minutes": -5}),
    ("crm_delta_sync", {"delete_mode": "purge"}),
    ("crm_rollback", {"lot_id": "nope"}),
    ("crm_rollback", {"run_id": ""}),
    ("crm_rehearsal", {"expected_changes": -1}),
])
def test_the_form_refuses_bad_values(dagbag, dag_id, conf):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(dagbag.get_dag(dag_id).params)
    with pytest.raises(ParamValidationError):
        params.update(conf)
        params.validate()


def test_pick_lists_for_entities_and_modes(dagbag):
    from crm_migration.model.config import ENTITIES

    delta = dagbag.get_dag("crm_delta_sync").params
    assert delta.get_param("entities").schema["examples"] == list(ENTITIES)  # a multi-select, not a text box
    assert delta.get_param("delete_mode").schema["enum"] == ["soft", "hard"]
    assert "delta" in dagbag.get_dag("crm_rollback").params.get_param("lot_id").schema["enum"]


@pytest.mark.parametrize("dag_file", sorted(p.name for p in (ROOT / "dags").glob("*.py")))
def test_dag_file_parse_time(airflow_db, dag_file):
    """Prints the parse time of each DAG file (Airflow imported first, as in the DAG processor)."""
    code = (
        "import time, runpy, airflow.sdk, airflow.providers.standard.operators.python\n"
        f"t = time.perf_counter(); runpy.run_path({str(ROOT / 'dags' / dag_file)!r})\n"
        "print(f'{time.perf_counter() - t:.3f}')\n"
        "import sys; heavy = [m for m in ('pandas', 'soda_core', 'jellyfish', 'faker') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    print(f"\nparse time of dags/{dag_file}: {out[0]} s")
    assert out[1] == "", f"heavy modules imported at parse time: {out[1]}"


def test_lots_are_ordered_by_assets(dagbag):
    accounts, contacts = dagbag.get_dag("crm_lot_accounts"), dagbag.get_dag("crm_lot_contacts")
    (outlet,) = accounts.get_task("publish_loaded").outlets
    assert outlet.name == "crm_lot_accounts_loaded"
    assert "crm_lot_accounts_loaded" in str(contacts.timetable.asset_condition)
    assert "crm_lot_users_loaded" in str(accounts.timetable.asset_condition)  # owners first
    users = dagbag.get_dag("crm_lot_users")
    assert users.timetable.asset_condition is None if hasattr(users.timetable, "asset_condition") else True


def test_each_run_logs_the_parameters_it_used(caplog):
    from crm_migration.dag import tasks

    with caplog.at_level("INFO", logger=tasks.log.name):
        tasks.log_params({"run_id": "manual__1", "params": {"sample_fraction": 0.5, "dry_run": True}})
    assert "run manual__1 with parameters: dry_run=True, sample_fraction=0.5" in caplog.text
