"""Nightly rehearsal: the real lot DAGs and the delta DAG on a scratch target, with a cutover forecast."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param

from crm_migration.dag import tasks
from crm_migration.dag.defaults import crm_dag
from crm_migration.dag.wiring import python_task, watcher
from crm_migration.model.config import load_lots
from crm_migration.model.settings import load_migration_config

CFG = load_migration_config()

DOC = """
### What it does
Every night at `rehearsal.schedule` of `config/migration.yaml` (default 02:00 UTC), once unpaused --
**unpausing never starts one**: Airflow creates the last missed slot at once, and `rebuild` skips a
scheduled run starting more than `rehearsal.late_start_minutes` after its slot (the run shows skipped, its
log says why); trigger the DAG to rehearse now. Rebuilds the **rehearsal** target (connection
`crm_rehearsal`, never the real `crm_target`) from scratch, then **triggers the real lot DAGs** one after
the other and then the real `crm_delta_sync`, each with `target=rehearsal` (the connection swapped by a
param) and waits for each; compares counts and rows/s per stage with the previous rehearsal
(`rehearsal.history` in the rehearsal database) and writes a **cutover-window forecast** for
`expected_changes` changed rows from the costs of the delta path measured under the scheduler: a delta run
with nothing changed (the fixed cost) and a replay (`replay_rows`: that many migrated rows read again as if
changed, run `rehearsal__<run id>__replay`) for the cost per changed row; a forecast over the cutover window budget
(`timeouts.cutover_window_minutes`) pages, as a failure does. With `anonymise` (default true) names,
e-mails, phones and streets are masked at extract, for the rehearsal target only: the same value always gets
the same mask (duplicates stay duplicates, so the dedupe and the timings stay realistic); the key is
`CRM_MASK_KEY` or one kept in the rehearsal database. The triggered runs are named `rehearsal__<this run
id>`; their reports are in the list of reports. Rehearsal runs never update the lots' assets: a rehearsal
never starts a real lot.

### Parameters
- `expected_changes` (default 10000): changed legacy rows expected between the last lot load and cutover.
- `anonymise` (default true): rehearse on masked personal data.

### How to rerun a failed task
Clear from `rebuild`: the rehearsal always starts from an empty target, so a partial rehearsal is
simply redone (the triggered runs are reset). A failed `rehearse_lot_*` task names the lot run that
failed: open it (same run id) -- the same data would stop the real lot, fix it before cutover.

### How to roll back
Nothing to roll back: the rehearsal never writes the real target. It refuses to run when
`crm_rehearsal` and `crm_target` point at the same database.

### What to check in the report
`compare_and_forecast` logs counts that moved and stages more than 20 % slower than the previous
night, and the forecast window; `rehearsal.history` keeps every night's summary (the reports page
charts the trend of rows/s and forecast across nights); each lot's import report is in the reports list.
"""

with crm_dag(
    "crm_rehearsal",
    tags=("rehearsal",),
    description="Nightly rehearsal: the real lot DAGs and a delta sync on a scratch target, cutover forecast",
    schedule=CFG.rehearsal.schedule,  # config/migration.yaml: rehearsal.schedule (null: only when triggered)
    is_paused_upon_creation=True,  # nightly once someone unpauses it; a late slot is skipped (rebuild)
    render_template_as_native_obj=True,  # the anonymise param reaches the triggered runs as a boolean
    doc_md=DOC,
    params={"expected_changes": Param(10_000, type="integer", minimum=0, maximum=100_000_000,
                                      description="Changed legacy rows expected at cutover, for the forecast"
                                                  " (0 to 100,000,000)."),
            "anonymise": Param(True, type="boolean", description="Mask names, e-mails, phones and streets at"
                               " extract (rehearsal target only; the same value, the same mask).")},
) as dag:
    rebuild = python_task(tasks.rehearsal_rebuild, "rebuild")()
    previous, triggered = rebuild, [rebuild]
    conf = {"target": "rehearsal", "anonymise": "{{ params.anonymise }}"}
    replay = {**conf, "replay_rows": "{{ params.expected_changes }}"}  # the window per changed row, measured
    for dag_id, task_id, run_id, run_conf in [
            *((f"crm_lot_{lot.lot_id}", f"rehearse_lot_{lot.lot_id}", tasks.REHEARSAL_RUN_ID, conf)
              for lot in load_lots()),
            ("crm_delta_sync", "rehearse_delta", tasks.REHEARSAL_RUN_ID, conf),
            ("crm_delta_sync", "rehearse_delta_replay", tasks.REHEARSAL_REPLAY_RUN_ID, replay)]:
        task = TriggerDagRunOperator(task_id=task_id, trigger_dag_id=dag_id, trigger_run_id=run_id,
                                     conf=run_conf, wait_for_completion=True, poke_interval=2, reset_dag_run=True,
                                     allowed_states=["success"], failed_states=["failed"],
                                     execution_timeout=timedelta(minutes=CFG.timeouts.rehearsal_minutes))
        previous >> task
        previous = task
        triggered.append(task)
    compare_and_forecast = python_task(tasks.rehearsal_compare, "compare_and_forecast")()
    previous >> compare_and_forecast
    watcher([*triggered, compare_and_forecast])
