"""Roll back one run of a lot or of the delta sync from its pre-images."""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Param, TriggerRule

from crm_migration.config import load_lots
from crm_migration.defaults import crm_dag
from crm_migration.tasks import run_rollback, watch

DOC = """
### What it does
Undoes one run (`lot_id` + `run_id`) of a lot DAG or of `crm_delta_sync`, in one transaction: rows the
run inserted are deleted, rows it updated or deleted are restored exactly from
`crm_migration.pre_image`, crosswalk entries it created are removed and the watermark it moved is put
back. Children before parents; it refuses to delete companies that people outside the run point to
(roll back the contacts run first).

### Parameters
- `lot_id`: the lot (`accounts`, `contacts`, ...) or `delta`.
- `run_id`: the run to undo, as shown in the grid or in `crm_migration.run_report`.
- `dry_run` (default true): compute and log the counts, then undo nothing.

### How to rerun a failed task
The rollback is one transaction: a failure leaves the target as it was. Fix the cause and clear `rollback`.
A run that was rolled back is recorded (`crm_migration.rollback_log`) and a second rollback of it is
refused with nothing changed: replayed after a newer run, it would revert that run's rows. (Loading the
run again clears the record.)

### How to roll back
This is the rollback. To redo the migration, trigger the lot again.

### What to check in the report
`reports/rollback/<run_id>.json` and `crm_migration.run_report` (lot_id `rollback`): rows restored,
inserted rows deleted, crosswalk rows removed and whether the watermark was restored, per entity.
"""

with crm_dag(
    "crm_rollback",
    tags=("rollback",),
    description="Undo one lot or delta run from its pre-images",
    schedule=None,
    doc_md=DOC,
    params={
        "lot_id": Param("accounts", type="string", enum=[lot.lot_id for lot in load_lots()] + ["delta"],
                        description="Lot whose run to undo, or delta."),
        "run_id": Param("", type="string", pattern=r"^[A-Za-z0-9_.:+\-]{1,250}$", description="Run to undo."),
        "dry_run": Param(True, type="boolean", description="Compute and log only; undo nothing."),
    },
) as dag:
    rollback = PythonOperator(task_id="rollback", python_callable=run_rollback, retries=0)
    watcher = PythonOperator(task_id="watcher", python_callable=watch, trigger_rule=TriggerRule.ONE_FAILED,
                             retries=0)
    rollback >> watcher
