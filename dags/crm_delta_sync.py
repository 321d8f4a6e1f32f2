"""The cutover DAG: move what changed in the legacy CRM since the last load, in seconds."""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Param, TriggerRule

from crm_migration.config import ENTITIES
from crm_migration.defaults import crm_dag
from crm_migration.tasks import run_delta_report, run_delta_stage, watch
from crm_migration.wiring import entity_chain

DOC = """
### What it does
The cutover: for each entity, extracts the legacy rows modified after its watermark
(`crm_migration.watermark`, set by the lot loads) minus an overlap, plus soft-deleted rows and rows
gone from the legacy CRM; runs them through the lots' cleanse and transform rules; dedupes *new* rows
against records already migrated (they merge into them); upserts; applies deletions (soft: `deleted_at`,
or hard); and advances the watermark **in the same transaction as the load**, after the raw, clean,
dedup and target gates passed. A row changed while this runs is picked up by the next run.

### Parameters
- `entities`: which entities to sync (default all, parents first).
- `freeze` (default false): final run with the legacy CRM frozen: fails if any row changed after the
  watermark or any row of this run was quarantined (nothing may be left behind).
- `dry_run` (default false): every stage and gate; no write to the target, watermark unchanged.
- `overlap_minutes` (default 5): read back this far before the watermark (late commits, clock skew).
- `delete_mode` (`soft` or `hard`), `detect_hard_deletes` (default true: compare legacy ids).

### How to rerun a failed task
Every task rewrites only its (delta, run_id) slice; the load upserts and moves the watermark in one
transaction, so a failed load left the watermark where it was. Fix the cause, clear the failed task and
its downstream tasks. Rerunning the whole DAG is safe too: the overlap re-reads, upserts are idempotent.

### How to roll back
Every row the delta load changed or deleted has its pre-image in `crm_migration.pre_image`
(lot_id `delta`, this run_id).

### What to check in the report
`report` (`crm_migration.run_report`, `reports/delta/<run_id>.json`): source = loaded + merged +
excluded + quarantined per entity, the **cutover window** (run start to watermark advanced), rows
changed, upserted and deleted per entity, and the new watermarks. `watcher` fails the run if any task failed.
"""

with crm_dag(
    "crm_delta_sync",
    tags=("delta", "cutover"),
    description="Cutover delta sync: changed, new and deleted legacy rows since the watermark",
    schedule=None,
    doc_md=DOC,
    params={
        "entities": Param(list(ENTITIES), type="array", items={"type": "string", "enum": list(ENTITIES)},
                          uniqueItems=True, minItems=1, description="Entities to sync (parents first)."),
        "freeze": Param(False, type="boolean", description="Final run: fail if anything is left behind."),
        "dry_run": Param(False, type="boolean", description="Every stage and gate, no write, watermark unchanged."),
        "overlap_minutes": Param(5, type="number", minimum=0, maximum=1440,
                                 description="Minutes read back before the watermark."),
        "delete_mode": Param("soft", type="string", enum=["soft", "hard"],
                             description="soft: set deleted_at; hard: delete the target row."),
        "detect_hard_deletes": Param(True, type="boolean",
                                     description="Find migrated rows that no longer exist in the legacy CRM."),
    },
) as dag:
    # none_failed: an entity left out by the param is skipped without skipping the others
    rule = {"trigger_rule": TriggerRule.NONE_FAILED}
    previous = PythonOperator(task_id="prepare", python_callable=run_delta_stage, op_kwargs={"stage": "prepare"})
    all_tasks = [previous]
    for entity in ENTITIES:
        previous, tasks = entity_chain(previous, entity, run_delta_stage, {}, **rule)
        all_tasks += tasks
    freeze = PythonOperator(task_id="freeze_check", python_callable=run_delta_stage,
                            op_kwargs={"stage": "freeze_check"}, **rule)
    report = PythonOperator(task_id="report", python_callable=run_delta_report, trigger_rule=TriggerRule.ALL_DONE)
    watcher = PythonOperator(task_id="watcher", python_callable=watch, trigger_rule=TriggerRule.ONE_FAILED,
                             retries=0)
    previous >> freeze >> report
    all_tasks += [freeze, report]
    all_tasks >> watcher
