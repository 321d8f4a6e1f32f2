"""Task wiring shared by the DAG files: the stage/gate chain of one entity.

Light on purpose (imported at DAG parse time): no pandas, Soda or database here.
"""

from __future__ import annotations

from collections.abc import Callable

from airflow.providers.standard.operators.python import PythonOperator

from crm_migration.ops.pipeline import GATE_AFTER, STAGE_TABLE  # the one stage table (lots, delta, rehearsal)


def entity_chain(previous, entity: str, python_callable: Callable, op_kwargs: dict, **task_kwargs) -> tuple:
    """stage_<entity> -> gate_<stage>_<entity> for every stage, after previous; returns (last task, all tasks).
    A fanned-out stage (the dedupe) is <stage>_prepare_<entity> -> <stage>_score_<entity> (one mapped task
    per partition the prepare task returns, spread over the workers) -> <stage>_<entity>."""
    tasks = []
    for step in STAGE_TABLE:
        stage = step.stage
        if step.fan_out:
            plan = PythonOperator(task_id=f"{stage}_prepare_{entity}", python_callable=python_callable,
                                  op_kwargs={**op_kwargs, "stage": f"{stage}_prepare", "entity": entity},
                                  **task_kwargs)
            parts = PythonOperator.partial(task_id=f"{stage}_score_{entity}", python_callable=python_callable,
                                           map_index_template="partition {{ task.op_kwargs['part'] }} of"
                                                              " {{ task.op_kwargs['of'] }}",
                                           **task_kwargs).expand(op_kwargs=plan.output)
            previous >> plan
            previous = parts
            tasks += [plan, parts]
        work = PythonOperator(task_id=f"{stage}_{entity}", python_callable=python_callable,
                              op_kwargs={**op_kwargs, "stage": stage, "entity": entity}, **task_kwargs)
        check = PythonOperator(task_id=f"gate_{GATE_AFTER[stage]}_{entity}", python_callable=python_callable,
                               op_kwargs={**op_kwargs, "stage": f"gate_{GATE_AFTER[stage]}", "entity": entity},
                               **task_kwargs)
        previous >> work >> check
        previous = check
        tasks += [work, check]
    return previous, tasks
