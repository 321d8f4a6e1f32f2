"""make airflow: the Airflow UI with the demo, as an ops engineer uses it.

Starts `airflow standalone` (API server + UI, scheduler with the LocalExecutor, DAG processor, triggerer)
with its metadata in PostgreSQL, the demo legacy CRM built (once; kept across restarts), the target and
rehearsal databases created, the crm_legacy / crm_target / crm_rehearsal connections set, every DAG
unpaused (lots chain on assets: an asset event for a paused DAG is dropped), the reports plugin loaded.
Prints the URL and the login; Ctrl-C stops every component.

    python scripts/airflow_ui.py [--celery N]

--celery N: the CeleryExecutor instead (a team past one machine: docker-compose's `celery` profile is the
same): API server, scheduler, DAG processor, triggerer and N Celery workers (`airflow celery worker`), the
broker Redis at CRM_CELERY_BROKER (default redis://127.0.0.1:6379/0), results in the metadata database.
Workers on other machines join with the same configuration and `airflow celery worker`.

Databases: AIRFLOW_CONN_CRM_TARGET / AIRFLOW_CONN_CRM_LEGACY / AIRFLOW_CONN_CRM_REHEARSAL and
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN when set; otherwise the machine's PostgreSQL on 127.0.0.1:5432 or an
embedded one in .pgdata/ (databases crm_demo_legacy, crm_demo_target, crm_demo_rehearsal, crm_demo_airflow).
CRM_AIRFLOW_PORT (default 8080) and CRM_AIRFLOW_HOST (default 127.0.0.1: nothing is exposed beyond this
machine) set where the UI listens; DEMO_CONTACTS the size of the demo legacy CRM (default 5000).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from collections.abc import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from crm_demo import local_pg  # noqa: E402
from crm_migration.model.db import create_database_if_missing, engine, ensure_target_schema, to_sqlalchemy_url  # noqa: E402

USER = "admin"


def _url(env: str, server: str, database: str) -> str:
    os.environ.setdefault(env, local_pg.database_url(server, database))
    return os.environ[env]


def prepare(celery: int = 0) -> tuple[str, str]:
    """Databases, demo legacy, connections, login; returns (UI URL, password)."""
    home = Path(os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow")))
    home.mkdir(parents=True, exist_ok=True)
    server = local_pg.server_url()
    legacy = to_sqlalchemy_url(_url("AIRFLOW_CONN_CRM_LEGACY", server, "crm_demo_legacy"))
    target = to_sqlalchemy_url(_url("AIRFLOW_CONN_CRM_TARGET", server, "crm_demo_target"))
    rehearsal = to_sqlalchemy_url(_url("AIRFLOW_CONN_CRM_REHEARSAL", server, "crm_demo_rehearsal"))
    meta = to_sqlalchemy_url(local_pg.database_url(server, "crm_demo_airflow"))
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", meta)
    for url in (legacy, target, rehearsal, os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]):
        create_database_if_missing(url)
    with engine(legacy).connect() as conn:
        built = conn.exec_driver_sql("SELECT to_regclass('public.contacts') IS NOT NULL").scalar() \
            if legacy.startswith("postgresql") else True
    if not built:
        from crm_demo.demo_legacy import build_legacy

        counts = build_legacy(legacy, contacts=int(os.environ.get("DEMO_CONTACTS", "5000")))
        print("demo legacy CRM built:", ", ".join(f"{t}={n}" for t, n in counts.items()), flush=True)
    ensure_target_schema(target)
    passwords = home / "crm_passwords.json"
    if not passwords.exists():
        passwords.write_text(json.dumps({USER: secrets.token_urlsafe(12)}))
        passwords.chmod(0o600)
    password = json.loads(passwords.read_text())[USER]
    venv_bin = str(Path(sys.executable).parent)
    os.environ.update({
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),  # standalone starts `airflow ...` by name
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if celery else "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "8"),  # workers kept alive
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__HOST": os.environ.get("CRM_AIRFLOW_HOST", "127.0.0.1"),
        "AIRFLOW__API__PORT": os.environ.get("CRM_AIRFLOW_PORT", "8080"),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{os.environ.get('CRM_AIRFLOW_PORT', '8080')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "plugins"), os.environ.get("PYTHONPATH")])),
        "SODA_CORE_TELEMETRY_ENABLED": "false",
    })
    if celery:
        os.environ.update({
            "AIRFLOW__CELERY__BROKER_URL": os.environ.get("CRM_CELERY_BROKER", "redis://127.0.0.1:6379/0"),
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": os.environ.get("AIRFLOW__CELERY__WORKER_CONCURRENCY", "4"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{os.environ['AIRFLOW__API__BASE_URL']}/execution/",
        })
    return f"http://localhost:{os.environ['AIRFLOW__API__PORT']}", password


def start(celery: int, log_path: Path) -> list[subprocess.Popen]:
    """The components in one process group (Ctrl-C and stop() reach them all): `airflow standalone`, or
    with celery the components one by one and that many Celery workers, each with its own log-server port
    and its own log file (celery-worker-<k>.log: which worker ran what is readable)."""
    airflow = [sys.executable, "-m", "airflow"]
    commands = [(airflow + ["standalone"], {}, log_path)] if not celery else [
        (airflow + [c], {}, log_path) for c in ("api-server", "scheduler", "dag-processor", "triggerer")] + [
        (airflow + ["celery", "worker", "--celery-hostname", f"crm-worker-{k}@%h"],
         {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(8793 + k)}, log_path.with_name(f"celery-worker-{k}.log"))
        for k in range(1, celery + 1)]
    procs: list[subprocess.Popen] = []
    for cmd, extra, path in commands:
        with open(path, "a") as log:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **extra},
                                          process_group=procs[0].pid if procs else 0))
    return procs


def wait_ready(url: str, procs: list[subprocess.Popen], timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as r:
                health = json.load(r)
            if health.get("scheduler", {}).get("status") == "healthy":
                return True
        except OSError:
            pass
        time.sleep(1)
    return False


def stop(procs: list[subprocess.Popen]) -> None:
    """Every component: they stop on SIGINT (standalone stops its children); what is left of the group
    is killed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave components behind
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    group = procs[0].pid
    try:
        os.killpg(group, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


def _interrupt(signum, frame) -> None:  # noqa: ANN001
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description="Airflow with the demo: standalone (LocalExecutor) or Celery workers")
    ap.add_argument("--celery", type=int, default=int(os.environ.get("CRM_CELERY_WORKERS", "0")), metavar="N",
                    help="run the CeleryExecutor with N local workers (Redis broker) instead of standalone")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # a kill stops every component too
    # Ctrl-C stops them also when this was started with SIGINT ignored (nohup, a non-interactive shell's &):
    # Python then keeps SIG_IGN, and the components were left running after the caller gave up waiting
    signal.signal(signal.SIGINT, signal.default_int_handler)
    url, password = prepare(args.celery)
    log_path = Path(os.environ["AIRFLOW_HOME"]) / ("airflow.log" if args.celery else "standalone.log")
    print(f"starting Airflow ({f'CeleryExecutor, {args.celery} workers' if args.celery else 'standalone'};"
          f" metadata DB migrated on first start; log: {log_path}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    procs = start(args.celery, log_path)
    try:
        if not wait_ready(url, procs):
            print(f"Airflow did not come up; the last lines of {log_path}:\n"
                  + "".join(log_path.read_text().splitlines(True)[-30:]), file=sys.stderr)
            return 1
        print(f"\nAirflow is up: {url}\n  login: {USER} / {password}   (kept in {os.environ['AIRFLOW_HOME']}/"
              "crm_passwords.json)\n  DAGs unpaused: trigger crm_lot_users (its success starts the lots that"
              " depend on it),\n  then crm_delta_sync for the cutover. Reports: Browse > CRM import reports, and"
              " the 'Import report' tab of a run.\n  Ctrl-C stops every component"
              f" (process group {procs[0].pid}).", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        dead = next(p for p in procs if p.poll() is not None)
        print(f"Airflow stopped ({' '.join(dead.args[3:])} exited {dead.returncode}); log: {log_path}",
              file=sys.stderr)
        return dead.returncode or 0
    except KeyboardInterrupt:
        print("\nstopping Airflow ...", flush=True)
        return 0
    finally:
        stop(procs)


class Launched:
    """This script as a child process, as the tests and benchmarks drive it: started (and waited for), its
    REST API called with the printed login, runs triggered and awaited, stopped as by Ctrl-C."""

    def __init__(self, env: dict, args: Sequence[str] = (), timeout: float = 420):
        home = Path(env["AIRFLOW_HOME"])
        self.out = home / "make-airflow.out"
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None and "Airflow is up" not in self.text():
            time.sleep(1)
        if "Airflow is up" not in self.text():
            self.stop()
            raise RuntimeError(f"{Path(__file__).name} did not come up:\n{self.text()[-3000:]}")
        self.url = f"http://localhost:{env.get('CRM_AIRFLOW_PORT', '8080')}"
        self.password = json.loads((home / "crm_passwords.json").read_text())[USER]
        self.group = int(re.search(r"process group (\d+)", self.text()).group(1))
        self.token: str | None = None

    def text(self) -> str:
        return self.out.read_text()

    def api(self, path: str, body: dict | None = None, method: str | None = None) -> dict:
        if self.token is None:
            req = urllib.request.Request(f"{self.url}/auth/token", method="POST", headers={
                "content-type": "application/json"}, data=json.dumps({"username": USER,
                                                                      "password": self.password}).encode())
            with urllib.request.urlopen(req, timeout=30) as r:
                self.token = json.load(r)["access_token"]
        req = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"Bearer {self.token}",
                                                                   "content-type": "application/json"},
                                     data=json.dumps(body).encode() if body is not None else None,
                                     method=method or ("POST" if body is not None else "GET"))
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        return self.api(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})["dag_run_id"]

    def wait(self, dag_id: str, run_id: str, timeout: float, poll: float = 2) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.api(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")
            if run["state"] in ("success", "failed") or time.monotonic() > deadline:
                return run
            time.sleep(poll)

    def stop(self) -> list[str]:
        """Ctrl-C; returns the pids of components still running after it (none, if all is well)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        group = getattr(self, "group", None)
        if group is None:
            return []
        time.sleep(3)
        return subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()


if __name__ == "__main__":
    sys.exit(main())
