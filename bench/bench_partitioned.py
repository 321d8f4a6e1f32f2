"""The partitioned dedupe as the lot DAG runs it: one process per task, on generated contacts.

    python bench/bench_partitioned.py --contacts 300000 [--contacts 1000000] [--partitions 4] [--workers 2]

Takes bench_dedupe_scale's cleansed rows with planted duplicates (bench/.data), writes them as the clean
slice of a scratch target (crm_bench_partitioned), then runs the three steps of the contacts lot's dedupe
each in a process of its own, as Airflow's workers do: dedupe_prepare (learn, plan), one dedupe_score per
partition (--workers at a time, the LocalExecutor's or N Celery workers' parallelism) and dedupe (cluster,
survive, write). Prints each step's seconds and peak RSS, the partitions' sum and their wall time, pairs
compared, and recall / precision of the planted pairs from the merge map in PostgreSQL. The projection to
more rows and workers is worked out in docs/benchmarks.md from these per-partition figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

RUN = "bench"


def _url() -> str:
    from conftest import LEGACY_URL

    return LEGACY_URL.rsplit("/", 1)[0] + "/crm_bench_partitioned"


def _lot(partitions: int | None):  # noqa: ANN202
    from crm_migration.model.config import load_lots

    lot = {lot.lot_id: lot for lot in load_lots()}["contacts"]
    cfg = lot.entities["contacts"]
    return lot.model_copy(update={"entities": {**lot.entities, "contacts": cfg.model_copy(
        update={"dedupe": cfg.dedupe.model_copy(update={"partitions": partitions})})}})


def load_slice(n: int) -> list:
    """The cached clean rows as the run's clean slice; returns the planted pairs."""
    import pickle

    import bench_dedupe_scale

    from crm_migration.rules.cleanse import CLEAN_COLUMNS
    from crm_migration.model.db import create_database_if_missing, engine, ensure_target_schema, replace_slice

    with bench_dedupe_scale.prepare(n).open("rb") as f:
        cached = pickle.load(f)
    url = _url()
    create_database_if_missing(url)
    ensure_target_schema(url)
    cols = CLEAN_COLUMNS["contacts"]
    with engine(url).begin() as conn:
        for table in ("stg.contacts_cleanse", "stg.dedupe_plan", "stg.dedupe_input", "stg.dedupe_score",
                      "stg.dedupe_pair"):
            conn.exec_driver_sql(f"TRUNCATE {table}")
        replace_slice(conn, "stg.contacts_cleanse", {"lot_id": "contacts", "run_id": RUN}, cols,
                      ([r.get(c) for c in cols] for r in cached["clean"]))
    return cached["planted"]


def child(step: str, part: int, partitions: int | None) -> None:
    from crm_migration.matching import partitioned
    from crm_migration.stages import run as stages

    lot, url = _lot(partitions), _url()
    t = time.perf_counter()
    if step == "prepare":
        out = {"parts": len(partitioned.prepare(url, lot, "contacts", RUN))}
    elif step == "score":
        out = partitioned.score(url, lot, "contacts", RUN, part)
    else:
        out = stages.run_dedupe(url, lot, "contacts", RUN)
    out.update(seconds=round(time.perf_counter() - t, 1),
               peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    print("RESULT " + json.dumps(out, default=str), flush=True)


def _step(step: str, part: int, partitions: int | None) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", step, str(part), str(partitions or 0)],
                         capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{step} {part} failed:\n{res.stderr[-3000:]}")
    return json.loads(next(line for line in res.stdout.splitlines() if line.startswith("RESULT "))[7:])


def quality(planted: list) -> str:
    from crm_migration.model.db import engine

    with engine(_url()).connect() as conn:
        survivor = dict(conn.exec_driver_sql(
            f"SELECT legacy_id, survivor_legacy_id FROM stg.merge_map WHERE run_id = '{RUN}'").all())
    truth = [(d, o) for d, o in planted if d in survivor and o in survivor]
    found = sum(survivor[d] == survivor[o] for d, o in truth)
    truth_set = {frozenset(p) for p in truth}
    merged = [(lid, s) for lid, s in survivor.items() if lid != s]
    hit = sum(frozenset(p) in truth_set for p in merged)
    return (f"recall {found / max(1, len(truth)):.4f}, precision {hit / max(1, len(merged)):.4f}"
            f" ({len(merged):,} merges)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, action="append")
    ap.add_argument("--partitions", type=int, default=None,
                    help="default: the lot's (one per 500,000 rows times blocking keys)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]) or None)
        return
    for n in args.contacts or [300_000]:
        planted = load_slice(n)
        t0 = time.perf_counter()
        prep = _step("prepare", 0, args.partitions)
        t1 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            scores = list(pool.map(lambda p: _step("score", p, args.partitions), range(prep["parts"])))
        t2 = time.perf_counter()
        fin = _step("dedupe", 0, args.partitions)
        t3 = time.perf_counter()
        print(f"contacts={n:,}, {prep['parts']} partitions, {args.workers} workers:")
        print(f"  dedupe_prepare  {prep['seconds']:7.1f} s  peak {prep['peak_mb']:6,} MB")
        for s in scores:
            print(f"  dedupe_score {s['part']:2d} {s['seconds']:7.1f} s  peak {s['peak_mb']:6,} MB"
                  f"  rows {s.get('rows', 0):,}  pairs {s.get('compared', 0):,}  kept {s.get('kept', 0):,}")
        print(f"  partitions: {sum(s['seconds'] for s in scores):.1f} s of work, {t2 - t1:.1f} s wall on"
              f" {args.workers} workers")
        print(f"  dedupe (cluster) {fin['seconds']:6.1f} s  peak {fin['peak_mb']:6,} MB  merged {fin['merged']:,}"
              f"  pairs compared {fin['pairs_compared']:,}")
        print(f"  wall, process starts included: {t3 - t0:.1f} s; peak of any step"
              f" {max([prep['peak_mb'], fin['peak_mb'], *(s['peak_mb'] for s in scores)]):,} MB; {quality(planted)}",
              flush=True)


if __name__ == "__main__":
    main()
