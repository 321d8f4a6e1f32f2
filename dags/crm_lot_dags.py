"""DAG factory: one DAG per config/lots/*.yaml, named crm_lot_<lot_id>.

Thin wiring only: the stages live in plugins/crm_migration. Parsing reads the YAML
files and nothing else (no database, no pandas, no Soda).
"""

from __future__ import annotations

from airflow.sdk import DAG, Asset, Param, TriggerRule

from crm_migration.dag import tasks
from crm_migration.dag.defaults import crm_dag
from crm_migration.dag.wiring import entity_chain, python_task, watcher
from crm_migration.model.config import LotConfig, load_lots

DOC = """
### What it does
Migrates lot **{lot_id}** ({description}) for entities {entities}:
extract -> cleanse -> dedupe -> transform -> load, with a Soda gate after every stage
(`include/soda/<entity>/<stage>.yml`). A failed gate stops the lot before the next stage;
warn-level checks only report. Stage data: schema `stg`, keyed by (lot_id, run_id).
An entity that learns its match weights (`method: probabilistic`) dedupes in three steps:
`dedupe_prepare_<entity>` (learns the weights, splits the blocked pairs into partitions: one per
500,000 rows times blocking keys unless `dedupe.partitions` says otherwise), `dedupe_score_<entity>`
(one mapped task per partition, spread over the workers) and `dedupe_<entity>` (clusters every partition's pairs).
Depends on lots: {depends_on} (this DAG is scheduled on their `crm_lot_<id>_loaded` assets unless
the lot sets a schedule); `publish_loaded`, after the last load gate, updates the asset
`crm_lot_{lot_id}_loaded` (skipped on dry runs and rehearsals).

### Parameters
- `sample_fraction` (0.001 to 1, default 1): migrate a deterministic sample of legacy rows first.
- `dry_run` (default false): run every stage and gate but do not touch the target CRM.
- `target` (`target` or `rehearsal`): the nightly rehearsal triggers this DAG with `rehearsal` (its
  scratch database); `anonymise` (rehearsal only) masks personal values at extract.
- `only_quarantined` (default false): after fixing the cause (legacy data, a value map...), retry only
  the rows quarantined by `quarantine_run_id` (empty: the lot's latest run with a report).

### How to rerun a failed task
Every task deletes and rewrites only its own (lot, run) slice and the load upserts on the
target id (a merged customer keeps its id whichever member survives), so fix the cause (data: see
the gate's log and `crm_migration.gate_result`; connection: it was already retried) and **clear the
failed task with its downstream tasks** (its *Clear Task Instance* dialog opens with *Downstream*
selected: leave it so). The failed task's log ends on its cause and what to clear. Clearing the whole run
gives the same target state.
A failed `dedupe_score_<entity>` partition: clear that mapped task (or all of them) with its
downstream tasks; if `dedupe_<entity>` says the clean slice changed since the plan, clear
`dedupe_prepare_<entity>` with its downstream tasks.

### How to roll back
Every row the load changed has its pre-image in `crm_migration.pre_image` (lot_id, run_id): trigger
`crm_rollback` with this lot and run id, dry run first (it lists later runs that touched the same rows).

### What to check in the report
`report` logs and stores (`crm_migration.run_report`, `reports/{lot_id}/<run_id>.json`) the
identity **legacy rows = loaded + merged + excluded + quarantined** per entity, checked **by id
against the target**: the lot's legacy rows are read again from the legacy CRM and each must be an
active target row holding its current version, merged into one, excluded or quarantined. Ids that are
none of these are listed (lost, stale, survivor_missing) and fail `gate_load_<entity>`; a run whose
load failed still gets a report computed from the target. Also: quarantine counts by reason,
exclusions by rule, rows dated after the legacy clock (clock-skewed, taken), rows the target already
held in a newer version (not applied: newer wins), every gate check and timings per stage. `watcher`
fails the run when any task failed, even though `report` ran.

### Watermarks and concurrent loads
A full run sets the delta-sync watermark of this lot's scope to the legacy database's clock at
extract start minus `watermark_margin_minutes` (config/migration.yaml). A load of an entity waits
while another load of that entity (another lot or the delta sync) is writing.
"""


def lot_loaded(lot_id: str) -> Asset:
    """Updated when a lot's last load gate passes: dependent lots are scheduled on it."""
    return Asset(name=f"crm_lot_{lot_id}_loaded", uri=f"crm-cutover://lots/{lot_id}")


def build_lot_dag(lot: LotConfig) -> DAG:
    # a lot with parents and no schedule of its own starts when all its parents have loaded
    schedule = lot.schedule if lot.schedule or not lot.depends_on else [lot_loaded(d) for d in lot.depends_on]
    dag = crm_dag(
        f"crm_lot_{lot.lot_id}",
        owner=lot.owner,
        tags=("lot", lot.lot_id),
        description=lot.description,
        schedule=schedule,
        doc_md=DOC.format(lot_id=lot.lot_id, description=lot.description, entities=", ".join(lot.entities),
                          depends_on=", ".join(lot.depends_on) or "none"),
        params={
            "sample_fraction": Param(1.0, type="number", minimum=0.001, maximum=1,
                                     description="Fraction of legacy rows to migrate, 0.001 to 1 (deterministic"
                                     " sample; 1 = every row, the only setting that moves the delta watermark)."),
            "dry_run": Param(False, type="boolean",
                             description="Run every stage and gate, but do not write the target CRM."),
            "only_quarantined": Param(False, type="boolean",
                                      description="After a fix: migrate only the rows quarantined by an earlier run."),
            "target": Param("target", type="string", enum=["target", "rehearsal"],
                            description="target: the new CRM (connection crm_target); rehearsal: the scratch"
                            " database of the nightly rehearsal (crm_rehearsal), which triggers the lots so."),
            "anonymise": Param(False, type="boolean", description="Rehearsal only: mask names, e-mails, phones"
                               " and streets at extract (same input, same mask: duplicates stay duplicates)."),
            "quarantine_run_id": Param(None, type=["null", "string"], pattern=r"^[A-Za-z0-9_.:+\-]{1,250}$",
                                       description="With only_quarantined: the run whose quarantined rows to retry"
                                       " (empty: the lot's latest run with a report)."),
        },
    )
    with dag:
        previous = prepare = python_task(tasks.prepare, "prepare")(lot_id=lot.lot_id)
        all_tasks = [prepare]
        for entity in lot.entities:  # parents before children: contacts need the accounts crosswalk
            previous, chain = entity_chain(previous, lot.lot_id, entity)
            all_tasks += chain
        # the asset event that starts dependent lots: skipped on dry runs and rehearsals
        publish = python_task(tasks.publish_loaded, "publish_loaded", outlets=[lot_loaded(lot.lot_id)])()
        report = python_task(tasks.run_report, "report", trigger_rule=TriggerRule.ALL_DONE)(lot_id=lot.lot_id)
        previous >> publish >> report
        watcher([*all_tasks, publish, report])
    return dag


for _lot in load_lots():
    globals()[f"crm_lot_{_lot.lot_id}"] = build_lot_dag(_lot)
