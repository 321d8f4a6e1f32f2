"""Faults: a load killed mid-chunk, the target database going away during a load.
For each: rows lost = 0, rows duplicated = 0, and the rerun gives the target a clean load gives."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import TARGET_URL, table_checksum, unaccounted
from helpers import LOTS, run_pipeline

from crm_migration.stages import load
from crm_migration.model.config import LotConfig
from crm_migration.model.db import engine
from crm_migration.reports.report import build_report

ROOT = Path(__file__).resolve().parents[2]
RUN = "fault_run"


def _stage_contacts(legacy_url: str, url: str) -> LotConfig:
    """Accounts loaded, contacts staged up to the load: the load under test."""
    run_pipeline(legacy_url, url, RUN, lots=[LOTS["accounts"], LOTS["contacts"]], loaded={"accounts"})
    return LOTS["contacts"].model_copy(update={"load_chunk_rows": 100, "load_workers": 1})


def _state(url: str) -> dict:
    with engine(url).connect() as conn:
        dupes = conn.exec_driver_sql("SELECT count(*) - count(DISTINCT legacy_id) FROM crm.people").scalar_one()
        staged = conn.exec_driver_sql(
            f"SELECT count(*) FROM stg.contacts_transform WHERE run_id = '{RUN}'").scalar_one()
        xw = conn.exec_driver_sql("SELECT count(*) FROM crm_migration.crosswalk WHERE entity = 'contacts'"
                                  " AND merged_into IS NULL").scalar_one()
    return {"people": table_checksum(url, "crm.people"), "duplicates": dupes, "staged": staged, "crosswalk": xw}


def _clean_reload(url: str, lot: LotConfig) -> dict:
    with engine(url).begin() as conn:
        conn.exec_driver_sql("DELETE FROM crm.people; DELETE FROM crm_migration.merged WHERE entity = 'contacts';"
                             " DELETE FROM crm_migration.pre_image WHERE entity = 'contacts'")
    load.run_load(url, lot, "contacts", RUN)
    return _state(url)


def test_load_killed_mid_chunk_then_rerun(legacy_url, target_url):
    lot = _stage_contacts(legacy_url, target_url)
    with engine(target_url).connect() as conn:
        bounds = load._chunk_bounds(conn, "contacts", lot.lot_id, RUN, lot.load_chunk_rows)
    assert len(bounds) >= 3
    for low, high, _ in bounds[:2]:  # two chunks committed before the kill
        with engine(target_url).begin() as conn:
            load.load_chunk(conn, lot.lot_id, RUN, "contacts", low, high)

    blocker = engine(target_url).connect()  # holds crm.people so the loader stops inside a chunk, its
    blocker.exec_driver_sql("LOCK TABLE crm.people IN SHARE ROW EXCLUSIVE MODE")  # transaction open
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'plugins')!r})\n"
            "from crm_migration.stages import load\nfrom crm_migration.model.config import LotConfig\n"
            f"lot = LotConfig.model_validate_json({lot.model_dump_json()!r})\n"
            f"load.run_load({target_url!r}, lot, 'contacts', {RUN!r})\n")
    loader = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    watcher = sa.create_engine(target_url, isolation_level="AUTOCOMMIT")  # a fresh stats snapshot per query
    try:
        for _ in range(600):  # wait until the loader is blocked mid-chunk, its rows written but not committed
            with watcher.connect() as conn:
                waiting = conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()").scalar_one()
            if waiting:
                break
            assert loader.poll() is None, "the loader died before the kill"
            time.sleep(0.05)
        assert waiting, "the loader never reached the upsert"
        loader.send_signal(signal.SIGKILL)
        loader.wait(timeout=30)
    finally:
        blocker.rollback()
        blocker.close()
        watcher.dispose()
    time.sleep(0.5)  # the server notices the dead client and rolls its transaction back
    partial = _state(target_url)
    assert 0 < partial["people"][0] < partial["staged"] and partial["duplicates"] == 0
    # the report of the killed run tells the truth, from the target (before: "identity holds, loaded 338")
    report = build_report(target_url, lot, RUN, False, legacy_url=legacy_url)
    rec = report["entities"]["contacts"]["reconciliation"]
    missing = unaccounted(legacy_url, target_url, "contacts", lot.lot_id, RUN)
    assert not report["identity_ok"] and rec["counts"]["lost"] == len(missing) > 0
    assert report["entities"]["contacts"]["loaded"] == partial["people"][0]

    load.run_load(target_url, lot, "contacts", RUN)  # the on-call engineer clears the task
    recovered = _state(target_url)
    assert recovered["people"][0] == recovered["staged"] == recovered["crosswalk"]
    assert recovered["duplicates"] == 0
    assert _clean_reload(target_url, lot) == recovered


class _Proxy:
    """A TCP proxy to the PostgreSQL server that the test can cut, as a network or server outage."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.up = True
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.target)
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self.conns.clear()

    def restore(self) -> None:
        self.up = True


@pytest.mark.skipif("host=" in TARGET_URL, reason="the embedded server listens on a socket only")
def test_target_down_during_load_then_back(legacy_url, target_url):
    from crm_migration.dag.tasks import _is_transient

    lot = _stage_contacts(legacy_url, target_url)
    u = sa.engine.make_url(target_url)
    proxy = _Proxy(u.host, u.port or 5432)
    via_proxy = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    original = load.load_chunk

    def cut_after_two_chunks(conn, *args):
        written = original(conn, *args)
        if len(calls) == 2:
            proxy.cut()  # the target goes away with the third chunk in flight
        calls.append(args)
        return written

    calls: list = []
    load.load_chunk = cut_after_two_chunks
    try:
        with pytest.raises(Exception) as err:
            load.run_load(via_proxy, lot, "contacts", RUN)
    finally:
        load.load_chunk = original
    assert _is_transient(err.value), f"{type(err.value).__name__} would not be retried: {err.value}"
    partial = _state(target_url)
    assert partial["duplicates"] == 0 and partial["people"][0] < partial["staged"]

    proxy.restore()
    engine(via_proxy).dispose()
    load.run_load(via_proxy, lot, "contacts", RUN)  # the retry, once the target is back
    recovered = _state(target_url)
    assert recovered["people"][0] == recovered["staged"] and recovered["duplicates"] == 0
    assert _clean_reload(target_url, lot) == recovered

