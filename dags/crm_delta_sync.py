"""The cutover DAG: move what changed in the legacy CRM since the last load, in seconds."""

from __future__ import annotations

from airflow.sdk import Param, TriggerRule

from crm_migration.dag import alerts, tasks
from crm_migration.dag.defaults import crm_dag
from crm_migration.dag.wiring import python_task, watcher
from crm_migration.model.config import ENTITIES
from crm_migration.model.settings import load_migration_config

DOC = """
### What it does
The cutover: for each entity and each lot scope that loaded it (phased lots keep one watermark each),
extracts the legacy rows with a change column (the row's or a joined table's, e.g. the e-mail's) at or
after the scope's watermark (`crm_migration.watermark`: the legacy clock at the last extract minus a
margin) minus an overlap; entities with `compare_hashes` also take every row whose hash differs from
the version migrated (link tables without dates: read only in the key ranges whose checksums, computed
by the legacy database, differ); plus soft-deleted rows and rows gone from the legacy CRM; with them,
every other member of each merged customer a changed row touches (and the migrated records a new row
may merge into); runs them through the lots' cleanse and transform rules;
derives each touched customer again from all its active members (it keeps its target id whichever
member survives; a deleted survivor hands the record to the next member) and dedupes *new* rows
against records already migrated (they join them); upserts; applies deletions (soft: `deleted_at`,
or hard); and advances the watermark **in the same transaction as the load**, after the extract, cleanse,
dedupe and transform gates passed. A row changed while this runs is picked up by the next run.

One task, `sync`, runs every selected entity's stages with the Soda gate after each stage, in that
task: a failed gate stops the entity before its next stage, as it would between tasks. The entities run
side by side; an entity's transform (which remaps its references through the crosswalk) waits until
the entities it references are loaded (users, then accounts, contacts, then opportunities and leads,
then activities). An entity that fails leaves those that reference it unloaded; the others go on. One
task, not one per entity or per stage: under the real scheduler every task costs seconds of start-up,
more than a cutover's data; the log names each entity's stages and gates with their times.

### Parameters
- `entities`: which entities to sync (default all, parents first).
- `freeze` (default false): final run with the legacy CRM frozen: after the sync, **every** legacy row
  of every lot's scope is compared with the target by key and hash of its values (joined values
  included); the run fails naming the ids that are not loaded in their current version, merged into
  an active target row or excluded -- rows still quarantined included -- and active target rows the
  legacy CRM no longer has. Details: `crm_migration.run_report` (lot_id `freeze`).
- `dry_run` (default false): every stage and gate; no write to the target, watermark unchanged.
- `overlap_minutes` (default 5): read back this far before the watermark (late commits, clock skew);
  never less than `min_overlap_minutes` of config/migration.yaml. A freeze failure listing `stale` rows
  (a transaction committed long after its date): rerun with a larger overlap.
- `delete_mode` (`soft` or `hard`), `detect_hard_deletes` (default true: compare legacy ids, by key range:
  only ranges whose id checksums changed since the last delta are read).
- `target` / `anonymise`: as the lots' (the nightly rehearsal triggers this DAG on its scratch database).
- `replay_rows` (default 0): read this many migrated rows again as if they had changed, shared among the
  entities by size (the rehearsal measures the cutover window per changed row so); they upsert unchanged.

### How to rerun a failed task
Every stage rewrites only its (delta, run_id) slice; the load upserts and moves the watermark in one
transaction, so a failed load left the watermark where it was. Read the failed `sync` log (the entity,
the stage or gate that failed, and why: its last line), fix the cause, clear `sync` with its downstream
tasks (the *Clear Task Instance* dialog opens with *Downstream* selected: leave it so): it runs
every selected entity again from its extract (those already synced find little: their watermark moved).
Rerunning the whole DAG is safe too: the overlap re-reads,
upserts are idempotent.

### Deadline and paging
A run not done `timeouts.cutover_window_minutes` (config/migration.yaml) after it was queued pages (an
Airflow deadline alert, run by the triggerer; the run goes on), as a failed task does (`alerts`).

### How to roll back
Every row the delta load changed or deleted has its pre-image in `crm_migration.pre_image`
(lot_id `delta`, this run_id).

### What to check in the report
`report` (`crm_migration.run_report`, `reports/delta/<run_id>.json`): the changed legacy rows = loaded +
merged + excluded + quarantined per entity, checked by id against the target (the loaded gate fails on
any id that is none of these), the **cutover window** (run start to watermark advanced), rows
changed, upserted and deleted per entity, and the new watermarks. `watcher` fails the run if any task failed.
"""

with crm_dag(
    "crm_delta_sync",
    tags=("delta", "cutover"),
    description="Cutover delta sync: changed, new and deleted legacy rows since the watermark",
    schedule=None,
    deadline=alerts.deadline(load_migration_config()),  # pages when the cutover outruns its window's budget
    doc_md=DOC,
    params={
        "entities": Param(list(ENTITIES), type="array", items={"type": "string", "enum": list(ENTITIES)},
                          examples=list(ENTITIES),  # the form shows a pick list
                          uniqueItems=True, minItems=1, description="Entities to sync (run parents first)."),
        "freeze": Param(False, type="boolean", description="Final run: fail if anything is left behind."),
        "dry_run": Param(False, type="boolean", description="Every stage and gate, no write, watermark unchanged."),
        "overlap_minutes": Param(5, type="integer", minimum=0, maximum=1440,
                                 description="Minutes read back before the watermark (0 to 1440)."),
        "delete_mode": Param("soft", type="string", enum=["soft", "hard"],
                             description="soft: set deleted_at; hard: delete the target row."),
        "detect_hard_deletes": Param(True, type="boolean",
                                     description="Find migrated rows that no longer exist in the legacy CRM."),
        "target": Param("target", type="string", enum=["target", "rehearsal"],
                        description="target: the new CRM; rehearsal: the nightly rehearsal's scratch database."),
        "anonymise": Param(False, type="boolean", description="Rehearsal only: mask personal values at extract."),
        "replay_rows": Param(0, type="integer", minimum=0, maximum=10_000_000,
                             description="Rehearsals and benchmarks: also read this many migrated rows again as if"
                                         " they had changed (0 to 10,000,000), to measure the window per changed"
                                         " row; they write nothing new."),
    },
) as dag:
    sync = python_task(tasks.run_delta_sync, "sync")()
    freeze_check = python_task(tasks.run_freeze_check, "freeze_check")()
    report = python_task(tasks.run_delta_report, "report", trigger_rule=TriggerRule.ALL_DONE)()
    sync >> freeze_check >> report
    watcher([sync, freeze_check, report])
