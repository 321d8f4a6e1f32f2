"""The cutover window under the real scheduler, side by side with `airflow dags test`, in one run.

    python bench/bench_cutover_scheduler.py [--contacts 20000] [--changes 100 --changes 10000]

Builds a legacy CRM (scratch databases crm_bench_sched_*), loads every lot once (`airflow dags test`), then
starts Airflow as `make airflow` does (airflow standalone: scheduler with the LocalExecutor, API server, DAG
processor, triggerer; metadata in PostgreSQL) and for each --changes: changes that many legacy rows (80 %
contacts, 20 % accounts), triggers crm_delta_sync through the REST API and measures **trigger -> watermark
advanced** (the last load of the run committed, its watermark with it) and trigger -> run done. Airflow is
then stopped and the same number of fresh changes goes through `airflow dags test crm_delta_sync`, timed
the same way. Prints one line per (path, changes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_ui import Launched  # noqa: E402
from bench_delta import airflow_env, dags_test  # noqa: E402

from crm_demo import local_pg  # noqa: E402
from crm_migration.model.config import load_lots  # noqa: E402
from crm_migration.model.db import create_database_if_missing, engine, to_sqlalchemy_url  # noqa: E402
from crm_demo.demo_legacy import build_legacy  # noqa: E402

PORT = 8099


def change(legacy: str, n: int, tag: str) -> None:
    n_acc = max(1, n // 5)
    with engine(legacy).begin() as conn:
        now = "now() AT TIME ZONE 'UTC'"
        conn.exec_driver_sql(f"UPDATE accounts SET industry = 'Technology', date_modified = {now} WHERE id IN"
                             f" (SELECT id FROM accounts WHERE deleted = 0 ORDER BY md5(id || '{tag}') LIMIT {n_acc})")
        conn.exec_driver_sql(f"UPDATE contacts SET title = 'Cutover {tag}', date_modified = {now} WHERE id IN"
                             f" (SELECT id FROM contacts WHERE deleted = 0 ORDER BY md5(id || '{tag}')"
                             f" LIMIT {n - n_acc})")


def watermark_advanced(target: str, run_id: str) -> datetime | None:
    with engine(target).connect() as conn:
        return conn.exec_driver_sql(
            "SELECT max(finished_at) FROM crm_migration.stage_timing WHERE lot_id = 'delta' AND run_id = %(r)s"
            " AND stage = 'load'", {"r": run_id}).scalar()


def scheduler_run(af: Launched, target: str, conf: dict | None = None) -> tuple[float, float, float]:
    """(trigger -> watermark advanced, trigger -> run done, the report's window) of one delta run."""
    t0 = datetime.now(UTC)
    run_id = af.trigger("crm_delta_sync", conf)
    state = af.wait("crm_delta_sync", run_id, 3600, poll=0.2)["state"]
    done = datetime.now(UTC)
    if state != "success":
        raise SystemExit(f"delta run {run_id} {state}; see the Airflow log in {af.out.parent}")
    advanced = watermark_advanced(target, run_id)
    return (advanced - t0).total_seconds(), (done - t0).total_seconds(), _window(target, run_id)


def _window(target: str, run_id: str) -> float:
    with engine(target).connect() as conn:
        rep = conn.exec_driver_sql("SELECT report FROM crm_migration.run_report WHERE lot_id = 'delta' AND"
                                   " run_id = %(r)s", {"r": run_id}).scalar_one()
    return rep["cutover"]["window_seconds"]


def forecast_now(target: str, fixed: float, replay: float, n: int) -> float:
    """The rehearsal's forecast (crm_migration.ops.rehearsal.forecast) from a fixed cost and a replay of n rows."""
    from crm_migration.ops.rehearsal import forecast

    with engine(target).connect() as conn:
        migrated = conn.exec_driver_sql("SELECT count(*) FROM crm_migration.crosswalk").scalar_one()
    return forecast({"delta_fixed_seconds": fixed, "replay_seconds": replay, "migrated_rows": migrated,
                     "timings": {}}, n)["window_seconds"]


def forecast_before(target: str, fixed: float, n: int) -> float:
    """The forecast before issue 40: the lots' rows/s per stage (slowest entity) for n rows, plus the fixed
    cost (crm_migration.ops.rehearsal.forecast without a replay)."""
    from crm_migration.ops.rehearsal import forecast

    with engine(target).connect() as conn:
        rows = conn.exec_driver_sql("SELECT lot_id, entity, stage, sum(rows_in), sum(seconds) FROM"
                                    " crm_migration.stage_timing WHERE lot_id <> 'delta' GROUP BY 1, 2,"
                                    " split_part(stage, '_', 1), stage").all()
    spent: dict = {}
    for lot, entity, stage, n_rows, sec in rows:
        key = f"{lot}/{entity}/{stage.split('_')[0]}"
        rows_in, seconds = spent.get(key, (0, 0.0))
        spent[key] = (max(rows_in, int(n_rows or 0)), seconds + float(sec or 0))
    timings = {k: {"rows_per_s": r / s if s else None} for k, (r, s) in spent.items()}
    return forecast({"delta_fixed_seconds": fixed, "timings": timings}, n)["window_seconds"]


def migrated_crm(contacts: int) -> tuple[dict, dict, dict]:
    """A legacy CRM of that size (scratch databases crm_bench_sched_*, target and Airflow's rebuilt), every lot
    loaded with `airflow dags test`: (SQLAlchemy URLs, the dags-test environment, the environment to start
    Airflow standalone with)."""
    server = local_pg.server_url()
    uris = {k: local_pg.database_url(server, f"crm_bench_sched_{k}") for k in ("legacy", "target", "rehearsal",
                                                                              "airflow")}
    urls = {k: to_sqlalchemy_url(v) for k, v in uris.items()}
    admin = to_sqlalchemy_url(local_pg.database_url(server, "postgres"))
    with engine(admin).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for k in ("target", "airflow"):
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS crm_bench_sched_{k} WITH (FORCE)")
    for url in urls.values():
        create_database_if_missing(url)
    build_legacy(urls["legacy"], contacts=contacts, seed=3)
    env = airflow_env()
    env.update({"AIRFLOW_CONN_CRM_LEGACY": uris["legacy"], "AIRFLOW_CONN_CRM_TARGET": uris["target"],
                "AIRFLOW_CONN_CRM_REHEARSAL": uris["rehearsal"]})
    t = time.perf_counter()
    for lot in load_lots():
        dags_test(env, f"crm_lot_{lot.lot_id}")
    print(f"legacy {contacts:,} contacts loaded (every lot, dags test) in {time.perf_counter() - t:.0f} s", flush=True)
    af_env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW")}
    af_env.update({"AIRFLOW_HOME": tempfile.mkdtemp(prefix="crm-bench-sched-"), "CRM_AIRFLOW_PORT": str(PORT),
                   **{f"AIRFLOW_CONN_CRM_{k.upper()}": uris[k] for k in ("legacy", "target", "rehearsal")},
                   "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": urls["airflow"]})
    return urls, env, af_env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=20_000)
    ap.add_argument("--changes", type=int, action="append")
    args = ap.parse_args()
    changes = args.changes or [100, 10_000]
    urls, env, af_env = migrated_crm(args.contacts)
    af = Launched(af_env)
    results, forecasts = [], []
    try:
        scheduler_run(af, urls["target"])  # a first run: DAG parsed, workers warm, nothing changed
        fixed = scheduler_run(af, urls["target"])[2]  # the fixed cost, as the rehearsal measures it
        for n in changes:
            # the rehearsal's forecast, as it makes it: the replay of n migrated rows (nothing changed yet),
            # beside the earlier forecast from the lots' rows/s per stage; then n rows change for real
            replay = scheduler_run(af, urls["target"], {"replay_rows": n})[2]
            change(urls["legacy"], n, f"s{n}")
            wm, done, window = scheduler_run(af, urls["target"])
            results.append(("scheduler (standalone, LocalExecutor)", n, wm, done, window))
            forecasts.append((n, window, forecast_now(urls["target"], fixed, replay, n),
                              forecast_before(urls["target"], fixed, n)))
            print(f"  scheduler, {n:,} changed rows: trigger -> watermark advanced {wm:.1f} s, -> run done"
                  f" {done:.1f} s (report's window {window} s); forecast {forecasts[-1][2]:.1f} s"
                  f" (from the lots' rates: {forecasts[-1][3]:.1f} s)", flush=True)
    finally:
        af.stop()
    for n in changes:
        change(urls["legacy"], n, f"d{n}")
        t0 = datetime.now(UTC)
        total = dags_test(env, "crm_delta_sync")
        with engine(urls["target"]).connect() as conn:
            run_id = conn.exec_driver_sql("SELECT run_id FROM crm_migration.run_report WHERE lot_id = 'delta'"
                                          " ORDER BY created_at DESC LIMIT 1").scalar_one()
        wm = (watermark_advanced(urls["target"], run_id) - t0).total_seconds()
        results.append(("airflow dags test", n, wm, total, _window(urls["target"], run_id)))
        print(f"  dags test, {n:,} changed rows: start -> watermark advanced {wm:.1f} s, -> done {total:.1f} s",
              flush=True)
    print("\npath | changed rows | trigger -> watermark advanced (s) | trigger -> run done (s) | report window (s)")
    for path, n, wm, done, window in results:
        print(f"{path} | {n:,} | {wm:.1f} | {done:.1f} | {window}")
    print("\nchanged rows | measured window (s) | forecast, delta replay (s) | ratio | forecast, lots' rates (s) |"
          " ratio")
    for n, window, now, before in forecasts:
        print(f"{n:,} | {window} | {now:.1f} | {now / window:.2f} | {before:.1f} | {before / window:.2f}")


if __name__ == "__main__":
    main()
