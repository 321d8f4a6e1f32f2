"""Roll back one run of a lot or of the delta sync from its pre-images."""

from __future__ import annotations

from airflow.sdk import Param

from crm_migration.dag import tasks
from crm_migration.dag.defaults import crm_dag
from crm_migration.dag.wiring import python_task, watcher
from crm_migration.model.config import load_lots

DOC = """
### What it does
Undoes one run (`lot_id` + `run_id`) of a lot DAG or of `crm_delta_sync`, in **one transaction**: rows the
run inserted are deleted (children first), rows it updated or deleted come back exactly as they were
from `crm_migration.pre_image` (parents first; a hard delete's children get their reference back),
crosswalk entries it created are removed, merged entries it changed come back, and the watermark it
moved is put back.

### What it guarantees
- **Later runs are never silently undone.** If a run applied after this one touched the same target
  rows (updated them, inserted rows pointing to rows this run inserted, merged rows into them), the
  rollback is refused, naming those runs, with nothing changed. A **dry run** lists them (and stores the
  list); a rollback with `cascade` then takes every one of them back first, newest first, in the same
  transaction -- only if they are still exactly the runs the dry run listed (else: dry-run again).
- **A rollback is recorded** (`crm_migration.rollback_log`) and is **never replayed**: a second rollback of
  the same run is refused with nothing changed. (Loading the run again clears the record.)
- It refuses to delete rows that rows of other runs still point to (roll those back first, or cascade).
- What it cannot give back: changes made in the target by hand or by the new CRM's users after the run.

### Parameters
- `lot_id`: the lot (`accounts`, `contacts`, ...) or `delta`.
- `run_id`: the run to undo, as shown in the grid or in `crm_migration.run_report` (empty: the lot's latest
  applied run that is not rolled back yet; the log names it).
- `dry_run` (default true): compute and log the counts and the later runs a cascade would take back,
  then undo nothing.
- `cascade` (default false): also take back the later runs the last dry run listed.

### How to rerun a failed task
The rollback is one transaction: a failure leaves the target as it was. Fix the cause and clear `rollback`.

### How to roll back
This is the rollback. To redo the migration, trigger the lot again.

### What to check in the report
`reports/rollback/<run_id>.json` and `crm_migration.run_report` (lot_id `rollback`): per run taken back,
rows restored, inserted rows deleted, crosswalk rows removed and whether the watermark was restored,
per entity; `later_runs` lists the runs a cascade took (or would take) back.
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
        "run_id": Param(None, type=["null", "string"], pattern=r"^[A-Za-z0-9_.:+\-]{1,250}$",
                        description="Run to undo (empty: the lot's latest run not rolled back yet)."),
        "dry_run": Param(True, type="boolean", description="Compute and log only (and list the later runs a"
                         " cascade would take back); undo nothing."),
        "cascade": Param(False, type="boolean", description="Also take back, newest first, the later runs that"
                         " touched the same rows, as the last dry run listed them."),
    },
) as dag:
    rollback = python_task(tasks.run_rollback, "rollback", retries=0)()
    watcher([rollback])
