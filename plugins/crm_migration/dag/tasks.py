"""Task callables for the lot DAGs: they resolve connections and params from the
Airflow context, then call the plain stage functions. Heavy imports happen here,
inside the functions, never at DAG parse time."""

from __future__ import annotations

import functools
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from collections.abc import Callable

from crm_migration.dag import alerts
from crm_migration.model.config import load_lots
from crm_migration.model.errors import first_line, is_transient
from crm_migration.model.settings import load_migration_config

log = logging.getLogger(__name__)
# what to clear, in the words of Airflow 3.3's dialog (its Clear Task Instance dialog opens with Downstream selected)
CLEAR_HOW = "(Clear Task Instance, 'Downstream' left selected as the dialog opens)"


class UpstreamFailed(RuntimeError):
    """Raised by the watcher so that a run with any failed task ends failed."""


def _is_transient(exc: BaseException) -> bool:
    """A lost or refused connection is worth a retry; nothing else is (see crm_migration.errors)."""
    return is_transient(exc)


def _retries_left(context: dict) -> int:
    ti = context.get("ti")
    try:
        return max(0, int(ti.max_tries) - int(ti.try_number) + 1)
    except (AttributeError, TypeError, ValueError):
        return 0


def on_call_message(exc: BaseException, task_id: str) -> str:
    """The exception message on-call reads first: the cause in one line, then what to clear."""
    first = first_line(exc, 1500)
    # our own failures say what failed in their first line; anything else is named by its type
    cause = first if type(exc).__name__ in ("GateFailed", "AccountingError", "LeftBehind", "TargetRebuilt"
                                            ) else f"{type(exc).__name__}: {first}"
    return (f"{cause} -- fix the cause, then clear {task_id} with its downstream tasks {CLEAR_HOW}; a rerun is"
            " safe: every task rewrites only its own slice")


def fail_fast(fn: Callable) -> Callable:
    """Data and logic errors fail the task at once (no retry); connection errors propagate and are retried.
    The failure's message is one line (cause and what to clear); the details go to the log above it, not
    into a collapsed group."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        try:
            return fn(*args, **kwargs)
        except (AirflowSkipException, AirflowFailException):
            raise
        except Exception as exc:
            task_id = getattr(kwargs.get("ti"), "task_id", None) or "the failed task"
            if _is_transient(exc):
                left = _retries_left(kwargs)
                if left:
                    log.warning("transient error (%s retries left, the task will be retried): %s", left, exc)
                    raise
                log.error("transient error and no retry left: %s", exc)
                raise AirflowFailException(on_call_message(exc, task_id) + " once the connection is back") from exc
            log.error("%s failed, details:\n%s", task_id, exc)
            raise AirflowFailException(on_call_message(exc, task_id)) from exc

    return wrapper


def _lot(lot_id: str):
    for lot in load_lots():
        if lot.lot_id == lot_id:
            return lot
    raise KeyError(f"lot {lot_id!r} not found in config/lots")


def _urls(params: dict | None = None) -> tuple[str, str]:
    """(legacy URL, target URL) of a run: the `target` param swaps the target for the rehearsal's scratch
    database (the nightly rehearsal triggers the real DAGs so); `anonymise` is refused on the real target."""
    from crm_migration.model.db import connection_url

    params = params or {}
    conns = load_migration_config().connections
    legacy, target = connection_url(conns.legacy), connection_url(conns.target)
    if params.get("target", "target") == "rehearsal":
        rehearsal = connection_url(conns.rehearsal)
        if rehearsal == target:
            raise ValueError(f"the rehearsal connection {conns.rehearsal!r} points at the real target: refused")
        return legacy, rehearsal
    if params.get("anonymise"):
        raise ValueError("anonymise masks personal data for rehearsals: it is refused on the real target"
                         " (trigger with target=rehearsal)")
    return legacy, target


def publish_loaded(**context: Any) -> dict:
    """The lot's `crm_lot_<id>_loaded` asset event (dependent lots start on it): skipped on dry runs and on
    rehearsal runs, which must never start a real lot."""
    from airflow.sdk.exceptions import AirflowSkipException

    params = context.get("params") or {}
    if params.get("dry_run") or params.get("target", "target") != "target":
        raise AirflowSkipException("dry run or rehearsal: no asset event, dependent lots do not start")
    return {"published": True}


def _lot_run(lot_id: str, entity: str, context: dict, only_ids: set[str] | None = None) -> Any:
    """The pipeline.Run of one entity of a lot DAG's run, from the trigger's params."""
    from crm_migration.ops import pipeline

    params = context.get("params") or {}
    legacy_url, url = _urls(params)
    sample_fraction = float(params.get("sample_fraction", 1.0))
    return pipeline.Run(legacy_url, url, _lot(lot_id), entity, context["run_id"], "lot",
                        sample_fraction=sample_fraction, only_ids=only_ids, dry_run=bool(params.get("dry_run", False)),
                        # only a full run moves the delta-sync watermark: a sample or a retry does not cover all
                        advance_watermark=sample_fraction >= 1.0 and not params.get("only_quarantined"),
                        anonymise=bool(params.get("anonymise", False)))


def _retried_ids(lot_id: str, entity: str, context: dict) -> set[str] | None:
    """With only_quarantined: the ids the run retries (those quarantined by quarantine_run_id), else None."""
    from crm_migration.stages.run import quarantined_ids

    params = context.get("params") or {}
    if not params.get("only_quarantined"):
        return None
    source, ids = quarantined_ids(_urls(params)[1], lot_id, entity, context["run_id"], params.get("quarantine_run_id"))
    log.info("only_quarantined: %d %s rows quarantined by run %s will be retried", len(ids), entity, source)
    return ids


def log_params(context: dict) -> None:
    """The parameter values a run uses, in its first task's log (the trigger form's, or their defaults)."""
    params = dict(context.get("params") or {})
    log.info("run %s with parameters: %s", context.get("run_id"),
             ", ".join(f"{k}={params[k]!r}" for k in sorted(params)) or "none")


@fail_fast
def prepare(lot_id: str, **context: Any) -> dict:
    """A lot DAG's first task: the target's schema (additive DDL); a retry of a run that does not exist
    fails here, not rows later."""
    from crm_migration.model.db import ensure_target_schema

    log_params(context)
    ensure_target_schema(_urls(context.get("params"))[1])
    for entity in _lot(lot_id).entities:
        _retried_ids(lot_id, entity, context)
    return {"lot_id": lot_id, "run_id": context["run_id"]}


@fail_fast
def run_step(lot_id: str, entity: str, stage: str, **context: Any) -> dict:
    """One stage of pipeline.STAGE_TABLE for one entity."""
    from crm_migration.ops import pipeline

    only_ids = _retried_ids(lot_id, entity, context) if stage == "extract" else None
    return pipeline.run_stage(_lot_run(lot_id, entity, context, only_ids), stage)


@fail_fast
def run_gate(lot_id: str, entity: str, stage: str, **context: Any) -> dict:
    """The gate after a stage (after the load: the reconciliation by id as well)."""
    from crm_migration.ops import pipeline

    only_ids = _retried_ids(lot_id, entity, context) if stage == "load" else None
    run = _lot_run(lot_id, entity, context, only_ids)
    if stage == "load" and run.dry_run:
        from airflow.sdk.exceptions import AirflowSkipException

        # skipped, not passed: a dry run must not update the lot's asset and start dependent lots
        raise AirflowSkipException("dry run: nothing was loaded, the load gate has nothing to check")
    return pipeline.run_gate(run, stage)


@fail_fast
def dedupe_plan(lot_id: str, entity: str, **context: Any) -> list[dict]:
    """A lot's dedupe, first task: the plan; returns one {"part", "of"} per partition (the mapped tasks' kwargs)."""
    from crm_migration.ops import pipeline

    return pipeline.dedupe_prepare(_lot_run(lot_id, entity, context))


@fail_fast
def dedupe_part(lot_id: str, entity: str, part: int, of: int, **context: Any) -> dict:
    """A lot's dedupe, one mapped task per partition (`of` names the partition count in the UI)."""
    from crm_migration.ops import pipeline

    return pipeline.dedupe_score(_lot_run(lot_id, entity, context), int(part))


def _delta_run(params: dict, run_id: str, entities: list[str], legacy_url: str, url: str) -> Callable[[str], Any]:
    """entity -> its pipeline.Run in this delta run, from the trigger's params."""
    from crm_migration.ops import delta, pipeline

    lot = delta.delta_lot(entities)
    replay = int(params.get("replay_rows") or 0)  # shared among the entities once, before they run side by side
    shares = delta.replay_shares(url, list(lot.entities), replay) if replay else {}

    def make(entity: str) -> Any:
        return pipeline.Run(legacy_url, url, lot, entity, run_id, "delta", dry_run=bool(params.get("dry_run", False)),
                            overlap_minutes=float(params.get("overlap_minutes", 5)),
                            delete_mode=params.get("delete_mode", "soft"),
                            detect_hard_deletes=bool(params.get("detect_hard_deletes", True)),
                            anonymise=bool(params.get("anonymise", False)),
                            replay_rows=shares.get(entity, 0))
    return make


class _ParentNotSynced(RuntimeError):
    """An entity's transform needs the entities it references loaded; one of them failed."""


@fail_fast
def run_delta_sync(**context: Any) -> dict:
    """The cutover path in one task: every selected entity's stages, each followed by its Soda gate
    (pipeline.run_all: a failed gate stops that entity before its next stage). The entities run side by
    side in threads (the work is mostly in PostgreSQL): extract, cleanse and dedupe need nothing of
    another entity; an entity's transform (which remaps its references through the crosswalk) waits until
    the entities it references are loaded. One task instead of one per entity: under the real scheduler
    each task costs seconds of start-up, more than a delta's data. An entity that fails leaves those that
    reference it unloaded (their slices staged, nothing written); the others go on; the task then fails
    naming each failed entity and the stage or gate that failed.

    Long because the threads' shared state (each entity's done event, state and error) lives in its closure."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from crm_migration.ops import delta, pipeline
    from crm_migration.model.db import ensure_target_schema
    from crm_migration.model.spec import parents_of

    params = context.get("params") or {}
    log_params(context)
    entities = list(delta.delta_lot(list(params.get("entities") or []) or None).entities)
    legacy_url, url = _urls(params)
    ensure_target_schema(url)
    make = _delta_run(params, context["run_id"], entities, legacy_url, url)
    done = {e: threading.Event() for e in entities}
    state: dict[str, str] = {}
    errors: dict[str, BaseException] = {}

    def sync(entity: str) -> None:
        parents = [p for p in parents_of(entity) if p in done]

        def before(stage: str) -> None:
            if stage != "transform":
                return
            if parents:
                log.info("%s: transform waits for %s to be loaded", entity, ", ".join(parents))
            for p in parents:
                done[p].wait()
            blocked = [p for p in parents if state.get(p) != "synced"]
            if blocked:
                raise _ParentNotSynced(", ".join(blocked))

        try:
            pipeline.run_all(make(entity), before=before)
            state[entity] = "synced"
        except _ParentNotSynced as exc:
            state[entity] = "not loaded"
            log.error("%s not loaded: it references %s, which did not sync (its stages up to dedupe ran)",
                      entity, exc)
        except Exception as exc:  # noqa: BLE001 - reported below, with every other entity's outcome
            state[entity], errors[entity] = "failed", exc
            log.error("%s failed: %s", entity, exc)
        finally:
            done[entity].set()

    log.info("syncing %s side by side (each transform after the entities it references)", ", ".join(entities))
    with ThreadPoolExecutor(max_workers=len(entities), thread_name_prefix="sync") as pool:
        list(pool.map(sync, entities))
    state = {e: state[e] for e in entities}
    if errors:
        first = next(e for e in entities if e in errors)
        if all(_is_transient(exc) for exc in errors.values()):
            raise errors[first]  # a lost connection: retried, the rerun is safe (watermarks move with loads)
        not_loaded = [e for e, st in state.items() if st == "not loaded"]
        raise RuntimeError(f"delta sync of {', '.join(e for e in entities if e in errors)} failed ({first}: "
                           f"{first_line(errors[first])})"
                           + (f"; not loaded: {', '.join(not_loaded)}" if not_loaded else "")
                           + f"; synced: {', '.join(e for e, st in state.items() if st == 'synced') or 'none'}"
                           ) from errors[first]
    return {"entities": state}


@fail_fast
def run_freeze_check(**context: Any) -> dict:
    """After the sync: with the freeze param, every legacy row of every lot's scope against the target."""
    from crm_migration.ops import delta

    params = context.get("params") or {}
    if not params.get("freeze"):
        return {"freeze": False}
    legacy_url, url = _urls(params)
    return delta.freeze_check(url, legacy_url, context["run_id"], list(params.get("entities") or []) or None)


@fail_fast
def run_delta_report(**context: Any) -> dict:
    from crm_migration.ops import delta
    from crm_migration.reports.report import make_report

    params = context.get("params") or {}
    legacy_url, url = _urls(params)
    dag_run = context.get("dag_run")
    started = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
    report_dir = os.environ.get("CRM_REPORT_DIR") or load_migration_config().report_dir
    out = make_report(url, delta.delta_lot(list(params.get("entities") or []) or None), context["run_id"],
                      bool(params.get("dry_run", False)), report_dir, started_at=started, legacy_url=legacy_url,
                      failed_tasks=failed_tasks(context))
    log.info("%s\nreport written to %s", out["summary"], out["path"])
    return {"path": out["path"], "identity_ok": out["identity_ok"]}


@fail_fast
def run_rollback(**context: Any) -> dict:
    from crm_migration.reports.report import write_report
    from crm_migration.ops.rollback import latest_run, rollback_run

    params = context["params"]
    log_params(context)
    _, url = _urls()  # rollbacks are of the real target's runs
    run_id = params.get("run_id") or latest_run(url, params["lot_id"])
    if not params.get("run_id"):
        log.info("run_id left empty: rolling back %s's latest applied run, %s", params["lot_id"], run_id)
    out = rollback_run(url, params["lot_id"], run_id, bool(params.get("dry_run", False)),
                       by=context["run_id"], cascade=bool(params.get("cascade", False)))
    report = {"lot_id": "rollback", "run_id": context["run_id"], "dry_run": out["dry_run"], "identity_ok": True,
              "rolled_back": {"lot_id": out["lot_id"], "run_id": out["run_id"]}, "entities": out["entities"],
              "later_runs": out["later_runs"], "runs": out["runs"]}
    if out["later_runs"]:
        log.warning("%s later runs that touched the same rows %s: %s", len(out["later_runs"]),
                    "would be taken back by a cascade" if out["dry_run"] else "were taken back first",
                    ", ".join(out["later_runs"]))
    report_dir = os.environ.get("CRM_REPORT_DIR") or load_migration_config().report_dir
    path = write_report(url, report, report_dir)
    log.info("rollback of %s/%s%s: %s; report %s", out["lot_id"], out["run_id"], " (dry run)" if out["dry_run"] else "",
             out["entities"], path)
    return {"path": str(path), **{e: v for e, v in out["entities"].items()}}


REHEARSAL_PREFIX = "rehearsal__"
REHEARSAL_RUN_ID = REHEARSAL_PREFIX + "{{ run_id }}"  # the runs a rehearsal triggers, one name for all its lots
REHEARSAL_REPLAY_RUN_ID = REHEARSAL_RUN_ID + "__replay"  # its delta replay (the forecast's cost per changed row)


def _rehearsal_url() -> str:
    from crm_migration.model.db import connection_url

    cfg = load_migration_config()
    _, target_url = _urls()
    url = connection_url(cfg.connections.rehearsal)
    if url == target_url:
        raise ValueError(f"the rehearsal connection {cfg.connections.rehearsal!r} points at the real target")
    return url


def skip_late_slot(context: dict) -> None:
    """A scheduled run starting long after its slot is the one Airflow creates when the DAG is unpaused (the
    last missed night): skipped, never rehearsed by surprise. Triggered runs always go on."""
    from airflow.sdk.exceptions import AirflowSkipException

    run = context.get("dag_run")
    slot = getattr(run, "run_after", None) or getattr(run, "logical_date", None)
    if str(getattr(run, "run_type", "")).lower().rsplit(".", 1)[-1] != "scheduled" or slot is None:
        return
    late = datetime.now(UTC) - slot
    allowed = timedelta(minutes=load_migration_config().rehearsal.late_start_minutes)
    if late > allowed:
        raise AirflowSkipException(
            f"scheduled rehearsal for {slot:%Y-%m-%d %H:%M} UTC starting {late.total_seconds() / 60:.0f} min late"
            f" (more than rehearsal.late_start_minutes, {allowed.total_seconds() / 60:g}): this is the slot Airflow"
            " creates when the DAG is unpaused, skipped; the next night runs, or trigger the DAG to rehearse now")


@fail_fast
def rehearsal_rebuild(**context: Any) -> dict:
    """The rehearsal's scratch database emptied and rebuilt (the lots and the delta it then triggers are the
    real DAGs)."""
    from crm_migration.ops import rehearsal

    log_params(context)
    skip_late_slot(context)
    rehearsal.rebuild(_rehearsal_url())
    return {"rebuilt": True}


@fail_fast
def rehearsal_compare(**context: Any) -> dict:
    """The rehearsal's runs compared with the last one's, and the cutover window forecast."""
    from crm_migration.ops import rehearsal

    summary = rehearsal.record(_rehearsal_url(), f"{REHEARSAL_PREFIX}{context['run_id']}",
                               int((context.get("params") or {}).get("expected_changes", 10_000)))
    alerts.forecast_over_budget(summary["forecast"], context["run_id"])
    return {"forecast_window_seconds": summary["forecast"]["window_seconds"],
            "counts_changed": len(summary["comparison"].get("counts_changed") or []),
            "stages_slower": len(summary["comparison"].get("stages_slower") or [])}


@fail_fast
def run_report(lot_id: str, **context: Any) -> dict:
    from crm_migration.reports.report import make_report

    params = context.get("params") or {}
    legacy_url, url = _urls(params)
    report_dir = os.environ.get("CRM_REPORT_DIR") or load_migration_config().report_dir
    out = make_report(url, _lot(lot_id), context["run_id"], bool(params.get("dry_run", False)), report_dir,
                      legacy_url=legacy_url, failed_tasks=failed_tasks(context))
    log.info("%s\nreport written to %s", out["summary"], out["path"])
    return {"path": out["path"], "identity_ok": out["identity_ok"]}


def task_states(context: dict) -> dict[str, str]:
    """task id -> state of this run's tasks ({} when Airflow cannot tell: the listing is a courtesy)."""
    ti = context.get("ti")
    try:
        return dict(ti.get_task_states(dag_id=ti.dag_id, run_ids=[context["run_id"]])[context["run_id"]])
    except Exception:  # noqa: BLE001
        return {}


def failed_tasks(context: dict, states: dict[str, str] | None = None) -> list[str]:
    """The tasks that failed themselves (not those left upstream_failed behind them), in DAG order."""
    states = task_states(context) if states is None else states
    dag = getattr(context.get("ti"), "task", None)
    dag = getattr(dag, "dag", None)
    order = {t: k for k, t in enumerate(getattr(dag, "task_ids", None) or sorted(states))}
    # the watcher fails because another task did (one_failed may run it before the report): not a cause
    return sorted((t for t, s in states.items() if s == "failed" and t != "watcher"),
                  key=lambda t: (order.get(t, len(order)), t))


def watch(**context: Any) -> None:
    """Runs only when something upstream failed (trigger rule one_failed): fail the run, loudly, naming
    the tasks that failed and what to clear (the watcher itself needs no clearing: clearing the failed
    task with its downstream tasks reruns it)."""
    states = task_states(context)
    failed = failed_tasks(context, states)
    blocked = sorted(t for t, s in states.items() if s == "upstream_failed")
    raise UpstreamFailed(
        f"run {context['run_id']} failed at {', '.join(failed) or 'a task (see the grid view)'}"
        + (f" ({len(blocked)} tasks after it did not run)" if blocked else "")
        + ". The report task ran anyway (see its outcome). Read the failed task's log (its last line is the"
        f" cause), fix the cause, then clear {failed[0] if failed else 'the failed task'} with its downstream tasks"
        f" {CLEAR_HOW}: every task rewrites only its own slice, so the rerun is safe."
    )


def on_failure(context: dict) -> None:
    """Failure callback, the last of them: the cause and what to clear in one line, the last of the task's
    log, where Airflow's log viewer opens (out of the collapsed "Post Execute" group Airflow runs callbacks
    in). A failure fail_fast did not word (a timeout, a kill) gets the same line."""
    ti = context.get("ti") or context.get("task_instance")
    exc = context.get("exception")
    task_id = getattr(ti, "task_id", None) or "the failed task"
    first = first_line(exc) if exc is not None else ""
    if not first.startswith(("clear ", "run ")) and " then clear " not in first:
        first = on_call_message(exc if exc is not None else RuntimeError("the task failed"), task_id)
    log.info("::endgroup::")
    log.error("%s.%s failed (run %s): %s", getattr(ti, "dag_id", "?"), task_id, context.get("run_id"), first)
