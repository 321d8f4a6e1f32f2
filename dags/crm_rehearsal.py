"""Nightly rehearsal of the whole migration on a scratch target, with a cutover forecast."""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Param, TriggerRule

from crm_migration.config import load_lots
from crm_migration.defaults import crm_dag
from crm_migration.tasks import run_rehearsal_step, watch

DOC = """
### What it does
Every night: rebuilds the **rehearsal** target (connection `crm_rehearsal`, never the real
`crm_target`) from scratch, runs every lot in order with all its gates, then a delta sync; compares
counts and rows/s per stage with the previous rehearsal (`rehearsal.history` in the rehearsal
database) and writes a **cutover-window forecast** for `expected_changes` changed rows, from the
measured rows/s per stage and the delta run's fixed cost.

### Parameters
- `expected_changes` (default 10000): changed legacy rows expected between the last lot load and cutover.

### How to rerun a failed task
Clear from `rebuild`: the rehearsal always starts from an empty target, so a partial rehearsal is
simply redone. A failed gate in a `rehearse_lot_*` task names the check: the same data would stop the
real lot, fix it before cutover.

### How to roll back
Nothing to roll back: the rehearsal never writes the real target. It refuses to run when
`crm_rehearsal` and `crm_target` point at the same database.

### What to check in the report
`compare_and_forecast` logs counts that moved and stages more than 20 % slower than the previous
night, and the forecast window; `rehearsal.history` keeps every night's summary; each lot's import
report is in `reports/<lot>/<run_id>.json|html`.
"""

with crm_dag(
    "crm_rehearsal",
    tags=("rehearsal",),
    description="Nightly rehearsal: all lots and a delta sync on a scratch target, cutover forecast",
    schedule="0 2 * * *",
    is_paused_upon_creation=True,  # nightly once someone unpauses it; never a surprise run at start-up
    doc_md=DOC,
    params={"expected_changes": Param(10_000, type="integer", minimum=0, maximum=100_000_000,
                                      description="Changed legacy rows expected at cutover, for the forecast.")},
) as dag:
    previous = PythonOperator(task_id="rebuild", python_callable=run_rehearsal_step, op_kwargs={"step": "rebuild"})
    tasks = [previous]
    for lot in load_lots():
        task = PythonOperator(task_id=f"rehearse_lot_{lot.lot_id}", python_callable=run_rehearsal_step,
                              op_kwargs={"step": "lot", "lot_id": lot.lot_id})
        previous >> task
        previous = task
        tasks.append(task)
    delta = PythonOperator(task_id="rehearse_delta", python_callable=run_rehearsal_step, op_kwargs={"step": "delta"})
    compare = PythonOperator(task_id="compare_and_forecast", python_callable=run_rehearsal_step,
                             op_kwargs={"step": "compare"})
    watcher = PythonOperator(task_id="watcher", python_callable=watch, trigger_rule=TriggerRule.ONE_FAILED,
                             retries=0)
    previous >> delta >> compare
    [*tasks, delta, compare] >> watcher
