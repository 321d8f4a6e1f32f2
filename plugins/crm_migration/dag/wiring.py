"""Task wiring shared by the DAG files, in Airflow's TaskFlow style: each task is a typed callable of
crm_migration.dag.tasks; the stage/gate chain of one entity comes from the one stage table.

Light on purpose (imported at DAG parse time): no pandas, Soda or database here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk import task

from crm_migration.dag import tasks
from crm_migration.ops.pipeline import STAGE_TABLE  # the one stage table (lots, delta, rehearsal)


def python_task(fn: Callable, task_id: str, **task_kwargs: Any) -> Any:
    """fn as a TaskFlow task (call the result with fn's arguments); its return value is its XCom, small
    metadata only, never split into one XCom per key."""
    return task(fn, task_id=task_id, multiple_outputs=False, **task_kwargs)


def entity_chain(previous: Any, lot_id: str, entity: str) -> tuple[Any, list]:
    """<stage>_<entity> -> gate_<stage>_<entity> for every stage, after previous; returns (last task, all
    tasks). The dedupe (the stage marked fan_out) is dedupe_prepare_<entity> -> dedupe_score_<entity> (one
    mapped task per partition the prepare task returns, spread over the workers) -> dedupe_<entity>."""
    out = []
    for step in STAGE_TABLE:
        stage = step.stage
        if step.fan_out:
            plan = python_task(tasks.dedupe_plan, f"{stage}_prepare_{entity}")(lot_id=lot_id, entity=entity)
            parts = python_task(tasks.dedupe_part, f"{stage}_score_{entity}",
                                map_index_template="partition {{ task.op_kwargs['part'] }} of"
                                                   " {{ task.op_kwargs['of'] }}",
                                ).partial(lot_id=lot_id, entity=entity).expand_kwargs(plan)
            previous >> plan
            previous = parts
            out += [plan, parts]
        work = python_task(tasks.run_step, f"{stage}_{entity}")(lot_id=lot_id, entity=entity, stage=stage)
        check = python_task(tasks.run_gate, f"gate_{stage}_{entity}")(lot_id=lot_id, entity=entity, stage=stage)
        previous >> work >> check
        previous = check
        out += [work, check]
    return previous, out


def watcher(upstream: list) -> Any:
    """`watcher` after every task: it runs only when one failed (trigger rule one_failed) and fails the run,
    which an all_done `report` would otherwise end green."""
    from airflow.sdk import TriggerRule

    # the failed task paged already: the watcher's own failure only logs
    watch = python_task(tasks.watch, "watcher", trigger_rule=TriggerRule.ONE_FAILED, retries=0,
                        on_failure_callback=[tasks.on_failure])()
    upstream >> watch
    return watch
