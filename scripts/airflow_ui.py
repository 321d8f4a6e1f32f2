"""make airflow: the Airflow UI with the demo, as an ops engineer uses it.

Starts `airflow standalone` (API server + UI, scheduler with the LocalExecutor, DAG processor, triggerer)
with its metadata in PostgreSQL, the demo legacy CRM built (once; kept across restarts), the target and
rehearsal databases created, the crm_legacy / crm_target / crm_rehearsal connections set, every DAG
unpaused (lots chain on assets: an asset event for a paused DAG is dropped), the reports plugin loaded.
Prints the URL and the login; Ctrl-C stops every component.

Databases: AIRFLOW_CONN_CRM_TARGET / AIRFLOW_CONN_CRM_LEGACY / AIRFLOW_CONN_CRM_REHEARSAL and
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN when set; otherwise the machine's PostgreSQL on 127.0.0.1:5432 or an
embedded one in .pgdata/ (databases crm_demo_legacy, crm_demo_target, crm_demo_rehearsal, crm_demo_airflow).
CRM_AIRFLOW_PORT (default 8080) and CRM_AIRFLOW_HOST (default 127.0.0.1: nothing is exposed beyond this
machine) set where the UI listens; DEMO_CONTACTS the size of the demo legacy CRM (default 5000).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from crm_migration import local_pg  # noqa: E402
from crm_migration.db import create_database_if_missing, engine, ensure_target_schema, to_sqlalchemy_url  # noqa: E402

USER = "admin"


def _url(env: str, server: str, database: str) -> str:
    os.environ.setdefault(env, local_pg.database_url(server, database))
    return os.environ[env]


def prepare() -> tuple[str, str]:
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
        from crm_migration.demo_legacy import build_legacy

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
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "8"),  # workers kept alive
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__HOST": os.environ.get("CRM_AIRFLOW_HOST", "127.0.0.1"),
        "AIRFLOW__API__PORT": os.environ.get("CRM_AIRFLOW_PORT", "8080"),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{os.environ.get('CRM_AIRFLOW_PORT', '8080')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "plugins"), os.environ.get("PYTHONPATH")])),
        "SODA_CORE_TELEMETRY_ENABLED": "false",
    })
    return f"http://localhost:{os.environ['AIRFLOW__API__PORT']}", password


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as r:
                health = json.load(r)
            if health.get("scheduler", {}).get("status") == "healthy":
                return True
        except OSError:
            pass
        time.sleep(1)
    return False


def stop(proc: subprocess.Popen) -> None:
    """Every component: standalone stops its children on SIGINT; what is left of the group is killed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave components behind
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


def _interrupt(signum, frame) -> None:  # noqa: ANN001
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # a kill stops every component too
    url, password = prepare()
    log_path = Path(os.environ["AIRFLOW_HOME"]) / "standalone.log"
    print(f"starting Airflow (metadata DB migrated on first start; log: {log_path}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    with open(log_path, "a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_ready(url, proc):
            print(f"Airflow did not come up; the last lines of {log_path}:\n"
                  + "".join(open(log_path).readlines()[-30:]), file=sys.stderr)
            return 1
        print(f"\nAirflow is up: {url}\n  login: {USER} / {password}   (kept in {os.environ['AIRFLOW_HOME']}/"
              "crm_passwords.json)\n  DAGs unpaused: trigger crm_lot_users (its success starts the lots that"
              " depend on it),\n  then crm_delta_sync for the cutover. Reports: Browse > CRM import reports, and"
              " the 'Import report' tab of a run.\n  Ctrl-C stops every component.", flush=True)
        while proc.poll() is None:
            time.sleep(1)
        print(f"Airflow stopped (exit {proc.returncode}); log: {log_path}", file=sys.stderr)
        return proc.returncode or 0
    except KeyboardInterrupt:
        print("\nstopping Airflow ...", flush=True)
        return 0
    finally:
        stop(proc)


if __name__ == "__main__":
    sys.exit(main())
