"""The stage table: (stage, gate after it, function), read by the lot DAGs, the delta DAG and the
rehearsal, so the three cannot drift apart.

A lot run and a delta run differ in three stages only (extract reads a window and the customers it
touches, dedupe derives touched customers again, load applies deletions and moves the watermark in one
transaction): the functions take a ``Run`` and branch on its mode. Light at import (DAG files parse it):
the stage modules are imported when a stage runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal
from collections.abc import Callable

from crm_migration.model.config import entity_scopes

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One entity of one run: where, what, and the trigger parameters that matter to the stages."""

    legacy_url: str
    url: str
    lot: Any  # LotConfig
    entity: str
    run_id: str
    mode: Literal["lot", "delta"] = "lot"
    sample_fraction: float = 1.0
    only_ids: set[str] | None = None
    dry_run: bool = False
    advance_watermark: bool = True  # lot runs: full runs only (a sample or a retry covers less)
    overlap_minutes: float = 5
    delete_mode: str = "soft"
    detect_hard_deletes: bool = True
    anonymise: bool = False  # rehearsal target only: personal values masked at extract (crm_migration.anonymise)
    replay_rows: int = 0  # delta: this entity's share of the replay, migrated rows read again as if changed
    extra: dict = field(default_factory=dict)

    def mask(self):  # noqa: ANN201
        if not self.anonymise:
            return None
        from crm_migration.source import anonymise

        return anonymise.masker(self.entity, anonymise.mask_key(self.url))

    @property
    def allow_empty(self) -> bool:  # a delta with nothing changed is a normal, empty run
        return self.mode == "delta"


def _extract(r: Run) -> dict:
    from crm_migration.ops import delta
    from crm_migration.stages import run as stages

    if r.mode == "lot":
        # a partial run (a quarantine retry, a sample, one phase of a phased entity) also reads the migrated
        # customers its rows may be: they are deduplicated together, a duplicate joins its record
        partial = r.only_ids is not None or r.sample_fraction < 1 or len(entity_scopes(r.entity)) > 1
        expand = (delta.cluster_expansion(r.url, r.legacy_url, r.lot, r.entity, check_gone=False)
                  if partial and delta.has_migrated(r.url, r.entity) else None)
        return stages.run_extract(r.legacy_url, r.url, r.lot, r.entity, r.run_id, r.sample_fraction, r.only_ids,
                                  expand=expand, mask=r.mask())
    spans = delta.windows(r.url, r.entity, r.overlap_minutes)
    for scope, (_, since) in sorted(spans.items()):
        log.info("delta %s, scope %s: rows changed at or after %s (watermark minus overlap)", r.entity, scope,
                 since.isoformat())
    expand = delta.cluster_expansion(r.url, r.legacy_url, r.lot, r.entity, r.detect_hard_deletes)
    replay = delta.replay_ids(r.url, r.entity, r.replay_rows) if r.replay_rows else None
    return stages.run_extract(r.legacy_url, r.url, r.lot, r.entity, r.run_id, windows=spans, expand=expand,
                              mask=r.mask(), replay=replay)


def _cleanse(r: Run) -> dict:
    from crm_migration.stages import run as stages

    return stages.run_cleanse(r.url, r.lot, r.entity, r.run_id)


def _dedupe(r: Run) -> dict:
    from crm_migration.ops import delta
    from crm_migration.stages import run as stages

    if r.mode == "delta":
        return delta.run_dedupe_delta(r.url, r.lot, r.entity, r.run_id)
    return stages.run_dedupe(r.url, r.lot, r.entity, r.run_id)


def _transform(r: Run) -> dict:
    from crm_migration.stages import run as stages

    return stages.run_transform(r.url, r.lot, r.entity, r.run_id)


def _load(r: Run) -> dict:
    """The rows, then every relation (link table) the entity is an end of, synced whole."""
    from crm_migration.ops import delta
    from crm_migration.stages import load, relations

    if r.mode == "delta":
        out = delta.run_delta_load(r.url, r.legacy_url, r.lot, r.entity, r.run_id, r.dry_run, r.delete_mode,
                                   r.detect_hard_deletes)
    else:
        out = load.run_load(r.url, r.lot, r.entity, r.run_id, dry_run=r.dry_run,
                            advance_watermark=r.advance_watermark)
    if not r.dry_run and relations.relations_of(r.entity):
        out["relations"] = relations.sync(r.url, r.legacy_url, r.lot.lot_id, r.run_id, r.entity,
                                          scoped=r.mode == "delta")
    return out


def dedupe_prepare(r: Run) -> list[dict]:
    """A lot's dedupe, first task: the plan and one {"part", "of"} per partition (crm_migration.partitioned)."""
    from crm_migration.matching import partitioned

    return partitioned.prepare(r.url, r.lot, r.entity, r.run_id)


def dedupe_score(r: Run, part: int) -> dict:
    """A lot's dedupe, one mapped task per partition: its pairs scored."""
    from crm_migration.matching import partitioned

    return partitioned.score(r.url, r.lot, r.entity, r.run_id, part)


@dataclass(frozen=True)
class Step:
    """A stage: its name is also its task's (<stage>_<entity>), its gate's (gate_<stage>_<entity>), its Soda
    contract's (include/soda/<entity>/<stage>.yml) and its staging table's (checks.quality.STAGE_TABLE)."""

    stage: str
    run: Callable[[Run], dict]
    fan_out: bool = False  # lot DAGs: <stage>_prepare -> <stage>_score (one mapped task per partition) -> <stage>


STAGE_TABLE: tuple[Step, ...] = (
    Step("extract", _extract),
    Step("cleanse", _cleanse),
    Step("dedupe", _dedupe, fan_out=True),
    Step("transform", _transform),
    Step("load", _load),
)
STAGES = tuple(s.stage for s in STAGE_TABLE)
_BY_STAGE = {s.stage: s for s in STAGE_TABLE}


def run_stage(r: Run, stage: str) -> dict:
    if stage not in _BY_STAGE:
        raise ValueError(f"unknown stage {stage!r}; stages: {list(STAGES)}")
    return _BY_STAGE[stage].run(r)


def run_gate(r: Run, stage: str) -> dict:
    """The Soda gate after a stage; after the load, also the reconciliation by id against the target
    (every mode: lots, delta sync, rehearsal)."""
    from crm_migration.checks import quality

    if stage not in _BY_STAGE:
        raise ValueError(f"unknown stage {stage!r}; stages: {list(STAGES)}")
    if stage == "load":
        if r.dry_run:
            return {"entity": r.entity, "ok": True, "dry_run": True}
        return quality.gate_load(r.url, r.legacy_url, r.lot, r.entity, r.run_id, r.sample_fraction, r.only_ids,
                                 allow_empty=r.allow_empty, scoped=r.mode == "delta")
    outcome = quality.gate(r.url, r.entity, stage, r.lot.lot_id, r.run_id, allow_empty=r.allow_empty)
    return {"entity": r.entity, "ok": outcome.ok, "checks": len(outcome.checks)}


def run_all(r: Run, before: Callable[[str], None] | None = None) -> dict:
    """Every stage of the table and the gate after it, in order, in this process (the delta sync's one
    task): a failed gate stops the entity before its next stage, as between tasks. before(stage), if given,
    is called before each stage (the delta sync waits there for the entities a transform references)."""
    import time

    out = {}
    for step in STAGE_TABLE:
        if before is not None:
            before(step.stage)
        for name, fn in ((step.stage, lambda s=step: run_stage(r, s.stage)),
                         (f"gate_{step.stage}", lambda s=step: run_gate(r, s.stage))):
            t = time.perf_counter()
            try:
                out[name] = fn()
            except Exception:
                log.error("%s of %s (run %s) failed: the stages after it did not run", name, r.entity, r.run_id)
                raise
            log.info("%s of %s done in %.2f s: %s", name, r.entity, time.perf_counter() - t, out[name])
    return out
