"""Peak memory and time of each stage of the contacts lot as the rows grow (issue 13).

    python bench/bench_stage_memory.py [--contacts 100000 --contacts 1000000] [--base 50000]
    python bench/bench_stage_memory.py --dedupe-again 1000000   (the dedupe tasks again on that run's clean slice)

Builds a demo legacy CRM of --base contacts (scratch databases crm_bench_mem_*), then grows its contacts
to each --contacts by copying them in SQL under new ids, names and e-mails (distinct people: the dedupe
sees the demo's planted duplicates, not the copies), loads the users and accounts lots (not measured), and
runs each task of the contacts lot with the gate after it in a process of its own, as the lot DAG does:
extract, cleanse, dedupe_prepare, one dedupe_score per partition (--workers at a time: the LocalExecutor's
or N Celery workers' parallelism), dedupe (cluster), transform, load (the lot's tasks, without Airflow's own
start-up per task). Prints seconds and the process's peak RSS (high-water mark, imports included) per task
and size, and the whole lot's wall seconds. The streaming stages read and write in batches
(slices.BATCH_ROWS); the dedupe's partitions bound its scoring (crm_migration.partitioned).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from crm_demo import local_pg  # noqa: E402
from crm_migration.model.config import load_lots  # noqa: E402
from crm_migration.model.db import (copy_rows, create_database_if_missing, engine, ensure_target_schema,  # noqa: E402
                              to_sqlalchemy_url)

STAGES = ("extract", "cleanse", "dedupe", "transform", "load")
TASKS = ("extract", "cleanse", "dedupe_prepare", "dedupe_score", "dedupe", "transform", "load")
SERVER = local_pg.server_url()
LEGACY = to_sqlalchemy_url(local_pg.database_url(SERVER, "crm_bench_mem_legacy"))
SEED = 5  # the demo legacy CRM's
LOGS = ROOT / "bench" / ".data" / "logs"  # each task's log (stderr), by run and task


def target(n: int) -> str:
    """The target of size n: a database of its own, holding the parents and that size's contacts only. (One
    target for every size let the 1M lot's loaded contacts -- the first 1M of the 3M -- keep the 3M dedupe
    from merging two of them: 3M merged 83,277 after a 1M load, 96,992 with no load, on the same pairs.)"""
    return to_sqlalchemy_url(local_pg.database_url(SERVER, f"crm_bench_mem_target_{n}"))


def _size(run_id: str) -> int:
    """The size n of run bench_mem_n."""
    return int(run_id.rsplit("_", 1)[1])


def grow(contacts: int, base: int) -> None:
    """The legacy CRM's contacts grown to `contacts` rows: copy k of every base contact gets a new id, another
    first name (one of the base's, picked by a hash of its own and k), its own last name (random letters from
    a hash of its own and k), e-mail (marked with k) and phones (last four digits), its own e-mail rows and
    company link: another person at the same company, not a duplicate of its original; copies of two
    planted duplicates with the same names and e-mail are duplicates of each other, as their originals.
    (The first version kept the first name: every contact had a namesake colleague at its company, and
    the copies of a duplicate pair got different random surnames for one e-mail, which taught EM that a
    surname disagreeing is weak evidence and merged 19,744 colleagues at 100k.)"""
    with engine(LEGACY).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_base AS SELECT id FROM contacts")
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_first AS SELECT (row_number() OVER (ORDER BY"
                             " first_name) - 1)::int AS n, first_name FROM (SELECT DISTINCT first_name FROM contacts"
                             " WHERE first_name IS NOT NULL) f")
        conn.exec_driver_sql("CREATE UNIQUE INDEX IF NOT EXISTS bench_first_n ON bench_first (n)")
        have = conn.exec_driver_sql("SELECT count(*) FROM contacts").scalar_one()
        for k in range(1, -(-contacts // base)):
            if have >= contacts:
                break
            take = min(base, contacts - have)
            new, mark = f"md5(c.id || ':{k}')::uuid::text", chr(65 + k // 26) + chr(97 + k % 26)

            def phone(col: str, k: int = k) -> str:  # the same number plan, its last four digits the copy's own
                return (f"regexp_replace({col}, '[0-9]{{4}}$', lpad(mod(('x' || substr(md5(c.id || ':{k}:{col}'), 1,"
                        f" 4))::bit(16)::int, 10000)::text, 4, '0'))")
            conn.exec_driver_sql(f"""
                CREATE TEMP TABLE pick AS SELECT id FROM bench_base ORDER BY id LIMIT {take};
                INSERT INTO contacts SELECT {new}, salutation,
                  (SELECT f.first_name FROM bench_first f
                   WHERE f.n = mod(('x' || substr(md5(lower(c.first_name) || ':{k}'), 1, 7))::bit(28)::int,
                                   (SELECT count(*) FROM bench_first)::int)),
                  initcap(translate(substr(md5(lower(c.last_name) || ':{k}:n'), 1, 9), '0123456789', 'aeioubdfgk')),
                  title,
                  {phone('phone_work')}, {phone('phone_mobile')}, primary_address_city, primary_address_country,
                  lead_source, date_entered,
                  date_modified, deleted, assigned_user_id FROM contacts c JOIN pick USING (id)
                  ON CONFLICT DO NOTHING;
                INSERT INTO email_addresses SELECT md5(e.id || ':{k}')::uuid::text, '{mark}.' || e.email_address,
                  upper('{mark}.' || e.email_address), e.invalid_email, e.opt_out, e.date_modified, e.deleted
                  FROM email_addresses e WHERE e.id IN (SELECT r.email_address_id FROM email_addr_bean_rel r
                  JOIN pick p ON p.id = r.bean_id) ON CONFLICT DO NOTHING;
                INSERT INTO email_addr_bean_rel SELECT md5(r.id || ':{k}')::uuid::text,
                  md5(r.email_address_id || ':{k}')::uuid::text, md5(r.bean_id || ':{k}')::uuid::text,
                  r.bean_module, r.primary_address, r.date_modified, r.deleted
                  FROM email_addr_bean_rel r JOIN pick p ON p.id = r.bean_id ON CONFLICT DO NOTHING;
                INSERT INTO accounts_contacts SELECT md5(a.id || ':{k}')::uuid::text,
                  md5(a.contact_id || ':{k}')::uuid::text, a.account_id, a.date_modified, a.deleted
                  FROM accounts_contacts a JOIN pick p ON p.id = a.contact_id ON CONFLICT DO NOTHING;
                DROP TABLE pick;""")
            have = conn.exec_driver_sql("SELECT count(*) FROM contacts").scalar_one()
    with engine(LEGACY).begin() as conn:
        for t in ("contacts", "email_addresses", "email_addr_bean_rel", "accounts_contacts"):
            conn.exec_driver_sql(f"ANALYZE {t}")


def child(stage: str, run_id: str, part: int) -> None:
    """One task of the contacts lot in this process; prints its seconds and this process's peak RSS."""
    import logging

    from crm_migration.ops import pipeline

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    lot = next(lot for lot in load_lots() if lot.lot_id == "contacts")
    run = pipeline.Run(LEGACY, target(_size(run_id)), lot, "contacts", run_id)
    t = time.perf_counter()
    gate = 0.0
    if stage == "dedupe_prepare":
        out = {"parts": len(pipeline.dedupe_prepare(run))}
    elif stage == "dedupe_score":
        out = pipeline.dedupe_score(run, part)
    else:
        out = pipeline.run_stage(run, stage)
    seconds = time.perf_counter() - t
    if stage in pipeline.STAGES:
        t = time.perf_counter()
        pipeline.run_gate(run, stage)  # the Soda gate after it (and the reconciliation)
        gate = time.perf_counter() - t
    print(json.dumps({"stage": stage, "seconds": round(seconds, 1), "gate_seconds": round(gate, 1),
                      "out": {k: v for k, v in out.items() if isinstance(v, int)},
                      "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      # the cleanse's worker processes: the largest of them
                      "workers_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}))


def _task(stage: str, run_id: str, n: int, part: int = 0) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", stage, run_id, str(part)], capture_output=True,
                         text=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / f"{run_id}_{stage}{f'_{part}' if stage == 'dedupe_score' else ''}.log").write_text(out.stderr)
    if out.returncode != 0:
        raise SystemExit(f"{stage} at {n:,} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_tasks(run_id: str, n: int, tasks: tuple[str, ...], workers: int) -> dict[str, dict]:
    """The tasks of the contacts lot for run_id, each in a process of its own (the partitions workers at a time)."""
    results: dict[str, dict] = {}
    for stage in tasks:
        if stage == "dedupe_score":
            t = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(lambda p: _task("dedupe_score", run_id, n, p),
                                      range(results["dedupe_prepare"]["out"]["parts"])))
            summed = {k: sum(p["out"].get(k, 0) for p in parts) for k in ("rows", "compared", "kept")}
            res = {"seconds": round(time.perf_counter() - t, 1), "gate_seconds": 0.0,
                   "work_seconds": round(sum(p["seconds"] for p in parts), 1),
                   "peak_mb": max(p["peak_mb"] for p in parts), "out": {"partitions": len(parts), **summed}}
        else:
            res = _task(stage, run_id, n)
        results[stage] = res
        children = f" (worker processes: {res['workers_peak_mb']} MB)" if res.get("workers_peak_mb") else ""
        print(f"  {n:,} contacts, {stage}: {res['seconds']} s + gate {res['gate_seconds']} s, peak"
              f" {res['peak_mb']} MB{children} {res['out']}", flush=True)
    return results


def _planted(base: int) -> list[tuple[str, str]]:
    """The demo's planted duplicate contacts (duplicate id, original id), kept in the legacy database (table
    bench_planted) when the demo is built; regenerated (the same seed) for a legacy built before."""
    with engine(LEGACY).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_planted (did text PRIMARY KEY, cid text NOT NULL)")
        pairs = [tuple(r) for r in conn.exec_driver_sql("SELECT did, cid FROM bench_planted")]
        if not pairs:
            from crm_demo.demo_legacy import generate

            pairs = generate(base, seed=SEED)["planted_duplicates"]["contacts"]
            copy_rows(conn, "bench_planted", ("did", "cid"), pairs)
    return pairs


def _quality(n: int, base: int) -> str:
    """The dedupe of size n against the truth, counted in SQL over its target's clean slice and merge map:
    copy k of a contact is md5(id:k) (grow), so the copies of a planted pair are the pair's duplicates (the
    same names, hashed alike, when the pair's names were alike). Pairs of clean rows in one true group vs
    pairs in one merged cluster."""
    with engine(LEGACY).connect() as conn:
        base_ids = list(conn.exec_driver_sql("SELECT id FROM bench_base").scalars())
    planted = _planted(base)
    copies = -(-n // base) - 1
    with engine(target(n)).begin() as conn:
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")  # millions of ids hashed: not on disk
        conn.exec_driver_sql("CREATE TEMP TABLE q_base (id text PRIMARY KEY) ON COMMIT DROP")
        copy_rows(conn, "q_base", ("id",), ((i,) for i in base_ids))
        conn.exec_driver_sql("CREATE TEMP TABLE q_planted (did text PRIMARY KEY, cid text) ON COMMIT DROP")
        copy_rows(conn, "q_planted", ("did", "cid"), planted)
        conn.exec_driver_sql(f"""
            CREATE TEMP TABLE q_truth ON COMMIT DROP AS
            SELECT CASE WHEN k = 0 THEN b.id ELSE md5(b.id || ':' || k)::uuid::text END AS legacy_id,
                   CASE WHEN k = 0 THEN coalesce(p.cid, b.id)
                        ELSE md5(coalesce(p.cid, b.id) || ':' || k)::uuid::text END AS grp
            FROM q_base b LEFT JOIN q_planted p ON p.did = b.id CROSS JOIN generate_series(0, {copies}) k""")
        # fresh statistics: a slice just rewritten can read as one row, and the join below then loops per row
        conn.exec_driver_sql("ANALYZE q_truth; ANALYZE stg.contacts_cleanse; ANALYZE stg.merge_map")
        conn.execute(sa.text("""
            CREATE TEMP TABLE q_j ON COMMIT DROP AS
            SELECT t.grp, coalesce(m.survivor_legacy_id, c.legacy_id) AS cluster
            FROM stg.contacts_cleanse c JOIN q_truth t ON t.legacy_id = c.legacy_id
            LEFT JOIN stg.merge_map m ON m.lot_id = c.lot_id AND m.run_id = c.run_id AND m.entity = 'contacts'
              AND m.legacy_id = c.legacy_id
            WHERE c.lot_id = 'contacts' AND c.run_id = :r"""), {"r": f"bench_mem_{n}"})
        row = conn.exec_driver_sql("""
            SELECT (SELECT coalesce(sum(k * (k - 1) / 2), 0) FROM (SELECT count(*) AS k FROM q_j GROUP BY grp) g),
                   (SELECT coalesce(sum(k * (k - 1) / 2), 0) FROM (SELECT count(*) AS k FROM q_j GROUP BY cluster) g),
                   (SELECT coalesce(sum(k * (k - 1) / 2), 0) FROM (SELECT count(*) AS k FROM q_j
                                                                    GROUP BY grp, cluster) g)""").one()
    true, merged, right = (int(v) for v in row)
    return (f"  {n:,} contacts, dedupe against the planted truth: {true:,} duplicate pairs among the clean rows,"
            f" {merged:,} pairs merged, {right:,} of them true: recall {right / max(true, 1):.4f},"
            f" precision {right / max(merged, 1):.4f}")


def _print_dedupe(took: dict[int, float]) -> None:
    """The dedupe tasks' seconds by size and their ratio to linear from the smallest size."""
    sizes = sorted(took)
    print("dedupe (3 tasks, s) | " + " | ".join(f"{n:,}: {took[n]:.0f}" for n in sizes))
    print(f"dedupe time / linear from {sizes[0]:,} | " + " | ".join(
        f"{took[n] / took[sizes[0]] / (n / sizes[0]):.2f}x" for n in sizes))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, action="append")
    ap.add_argument("--base", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=2, help="dedupe partitions scored at a time")
    ap.add_argument("--child", nargs=3, metavar=("STAGE", "RUN_ID", "PART"))
    ap.add_argument("--through", choices=TASKS, default=TASKS[-1],
                    help="the last task run at each size (dedupe: the dedupe's scaling without transform and load)")
    ap.add_argument("--dedupe-again", type=int, metavar="CONTACTS", action="append",
                    help="only the three dedupe tasks, again, on the run of that size a previous run of this benchmark"
                         " left in its target (its clean slice as it was): a dedupe change measured without rebuilding;"
                         " the cluster task is then a rerun (the rows already have target ids);"
                         " repeat for several sizes")
    ap.add_argument("--again", choices=TASKS, action="append",
                    help="with --size: only these tasks, again, on the run of that size a previous run left")
    ap.add_argument("--size", type=int, help="the run --again works on")
    ap.add_argument("--processes", type=int, action="append",
                    help="worker processes of the CPU-bound steps (CRM_PROCESSES); repeat: each task --again once"
                         " per value, side by side")
    args = ap.parse_args()
    if args.again:
        for processes in args.processes or [0]:
            if processes:
                os.environ["CRM_PROCESSES"] = str(processes)
            print(f"processes={processes or 'default'}", flush=True)
            _run_tasks(f"bench_mem_{args.size}", args.size, tuple(args.again), args.workers)
        return
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    if args.dedupe_again:
        sizes = sorted(args.dedupe_again)
        took = {}
        for n in sizes:
            res = _run_tasks(f"bench_mem_{n}", n, tuple(t for t in TASKS if t.startswith("dedupe")), args.workers)
            took[n] = sum(r["seconds"] + r["gate_seconds"] for r in res.values())
            print(_quality(n, args.base), flush=True)
        _print_dedupe(took)
        return
    sizes = sorted(args.contacts or [100_000, 1_000_000])
    tasks = TASKS[:TASKS.index(args.through) + 1]
    from crm_demo.demo_legacy import build_legacy

    admin = to_sqlalchemy_url(local_pg.database_url(SERVER, "postgres"))
    with engine(admin).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        old = conn.exec_driver_sql("SELECT datname FROM pg_database WHERE datname LIKE 'crm_bench_mem_%%'").scalars()
        for db in list(old):
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    t = time.perf_counter()
    build_legacy(LEGACY, contacts=args.base, seed=SEED)
    _planted(args.base)
    print(f"demo legacy CRM, {args.base:,} contacts: {time.perf_counter() - t:.0f} s", flush=True)
    from crm_migration.ops import pipeline

    results: dict[int, dict[str, dict]] = {}
    for n in sizes:
        url = target(n)
        create_database_if_missing(url)
        ensure_target_schema(url)
        for lot in load_lots():  # the contacts' parents, in this process (not measured)
            if lot.lot_id in ("users", "accounts"):
                for entity in lot.entities:
                    pipeline.run_all(pipeline.Run(LEGACY, url, lot, entity, "bench_parents"))
        t = time.perf_counter()
        grow(n, args.base)
        print(f"legacy contacts grown to {n:,}: {time.perf_counter() - t:.0f} s", flush=True)
        run_id = f"bench_mem_{n}"
        start = time.perf_counter()
        results[n] = _run_tasks(run_id, n, tasks, args.workers)
        results[n]["wall"] = time.perf_counter() - start
        if "dedupe" in tasks:
            print(_quality(n, args.base), flush=True)
    print(f"\ntask (+ its gate; dedupe_score: wall of the partitions on {args.workers} workers, peak of one) | "
          + " | ".join(f"{n:,}: task s + gate s / peak MB" for n in sizes))
    for stage in tasks:
        print(f"{stage} | " + " | ".join(f"{results[n][stage]['seconds']} + {results[n][stage]['gate_seconds']}"
                                         f" / {results[n][stage]['peak_mb']}" for n in sizes))
    _print_dedupe({n: sum(results[n][s]['seconds'] + results[n][s]['gate_seconds'] for s in tasks
                          if s.startswith('dedupe')) for n in sizes})
    print("whole lot (wall s) | " + " | ".join(f"{results[n]['wall']:.0f}" for n in sizes))
    print("peak of any task (MB) | " + " | ".join(
        f"{max(results[n][s]['peak_mb'] for s in tasks)}" for n in sizes))

if __name__ == "__main__":
    main()
