"""The rehearsal's masks against the real run, side by side in one run: leaks and outcomes.

    python bench/bench_rehearsal.py [--contacts 3000]

Builds a demo legacy CRM (scratch databases crm_bench_reh_*), then runs every lot DAG and the delta DAG
(`airflow dags test`, `target=rehearsal`) twice into two scratch targets: once on the real values, once with
`anonymise` (the masks of crm_migration.source.anonymise, key CRM_MASK_KEY=bench). Prints, for each, the leak
scan's count (scripts/leak_scan.py: personal legacy values found in the rehearsal's tables and reports) and the
outcome: rows merged per entity, rows quarantined per entity and reason. A rehearsal rehearses when the
masked outcome is the real one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_delta import airflow_env, dags_test  # noqa: E402
from leak_scan import scan  # noqa: E402

from crm_demo import local_pg  # noqa: E402
from crm_demo.demo_legacy import build_legacy  # noqa: E402
from crm_migration.model.config import load_lots  # noqa: E402
from crm_migration.model.db import create_database_if_missing, engine, to_sqlalchemy_url  # noqa: E402


def rehearse(uris: dict, target: str, anonymise: bool) -> dict:
    """Every lot and a delta into the scratch target; its leak count and outcome."""
    env = airflow_env()
    env.update({"AIRFLOW_CONN_CRM_LEGACY": uris["legacy"], "AIRFLOW_CONN_CRM_TARGET": uris["target"],
                "AIRFLOW_CONN_CRM_REHEARSAL": uris[target], "CRM_MASK_KEY": "bench"})
    conf = json.dumps({"target": "rehearsal", "anonymise": anonymise})
    t = time.perf_counter()
    for dag_id in [*(f"crm_lot_{lot.lot_id}" for lot in load_lots()), "crm_delta_sync"]:
        dags_test(env, dag_id, conf)
    seconds = time.perf_counter() - t
    reports = [p for p in Path(env["CRM_REPORT_DIR"]).rglob("*") if p.is_file()]
    url = to_sqlalchemy_url(uris[target])
    leaks = scan(to_sqlalchemy_url(uris["legacy"]), url, reports)
    with engine(url).connect() as conn:
        merged = dict(conn.exec_driver_sql("SELECT entity, count(*) FROM crm_migration.merged GROUP BY 1").all())
        quarantined = {f"{e} {s}:{c}": n for e, s, c, n in conn.exec_driver_sql(
            "SELECT entity, stage, reason_code, count(*) FROM stg.quarantine WHERE lot_id <> 'delta'"
            " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").all()}
    return {"seconds": seconds, "leaks": len(leaks), "leaks_by_field": Counter(f"{e}.{f}" for e, f, _, _ in leaks),
            "merged": merged, "quarantined": quarantined}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=3000)
    args = ap.parse_args()
    server = local_pg.server_url()
    uris = {k: local_pg.database_url(server, f"crm_bench_reh_{k}") for k in ("legacy", "target", "plain", "masked")}
    admin = to_sqlalchemy_url(local_pg.database_url(server, "postgres"))
    with engine(admin).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for k in ("target", "plain", "masked", "legacy"):
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS crm_bench_reh_{k} WITH (FORCE)")
    for uri in uris.values():
        create_database_if_missing(to_sqlalchemy_url(uri))
    build_legacy(to_sqlalchemy_url(uris["legacy"]), contacts=args.contacts, seed=5)
    plain, masked = rehearse(uris, "plain", False), rehearse(uris, "masked", True)
    print(f"\nlegacy CRM: {args.contacts:,} contacts (demo generator, seed 5); `airflow dags test`, every lot"
          " and a delta")
    print("| | real values | anonymised |\n|---|---|---|")
    print(f"| leak scan: legacy values found | {plain['leaks']:,} | **{masked['leaks']:,}** |")
    print(f"| time, every lot and the delta (s) | {plain['seconds']:.0f} | {masked['seconds']:.0f} |")
    for e in sorted(set(plain["merged"]) | set(masked["merged"])):
        print(f"| merged {e} | {plain['merged'].get(e, 0)} | {masked['merged'].get(e, 0)} |")
    for k in sorted(set(plain["quarantined"]) | set(masked["quarantined"])):
        print(f"| quarantined {k} | {plain['quarantined'].get(k, 0)} | {masked['quarantined'].get(k, 0)} |")
    if masked["leaks"]:
        print("leaks by field:", masked["leaks_by_field"].most_common(10))


if __name__ == "__main__":
    main()
