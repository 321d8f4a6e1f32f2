"""CPU-bound work on other processes: a stage hands batches to worker processes while it reads and writes
the next ones. The workers are new interpreters (`python -m crm_migration.model.workers`), not forks and not
multiprocessing's: a task's process holds threads and sockets a fork would copy, multiprocessing's spawn runs
the task's main script again (Airflow's, which needs the metadata database a task has no access to), and a
Celery worker's task runs in a daemonic process, which multiprocessing forbids to have children. Each call
goes to a worker as a pickle on its stdin and comes back on its stdout; an error is raised in the stage,
with the worker's traceback."""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import pickle
import subprocess
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

MAX_PROCESSES = 8


def default_processes() -> int:
    """CRM_PROCESSES, else the CPUs this process may run on, at most MAX_PROCESSES (1: every batch in the
    task's own process)."""
    if os.environ.get("CRM_PROCESSES"):
        return max(1, int(os.environ["CRM_PROCESSES"]))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_PROCESSES, cpus))


class WorkerError(RuntimeError):
    """A call failed in a worker process (the message holds its traceback), or the worker died."""


def in_processes(fn: Callable[..., Any], calls: Iterable[tuple], processes: int) -> Iterator[Any]:
    """fn(*args) for each call, results in the calls' order. processes > 1 and more than one call: on that
    many worker processes, one call each in flight (the caller reads and writes the next batches meanwhile;
    memory stays bounded); otherwise here. fn must be a module-level function, its arguments and result
    picklable."""
    it = iter(calls)
    head = list(itertools.islice(it, 2))
    if processes <= 1 or len(head) < 2:
        yield from (fn(*args) for args in itertools.chain(head, it))
        return
    target = f"{fn.__module__}:{fn.__qualname__}"
    log.info("%s: batches on %d worker processes", fn.__qualname__, processes)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs: list[subprocess.Popen] = []  # started as batches need them (two batches: two workers, not eight)
    free: deque = deque()
    busy: deque = deque()
    try:
        for args in itertools.chain(head, it):
            if not free and len(procs) < processes:
                procs.append(subprocess.Popen([sys.executable, "-m", __name__, target], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, env=env))
                free.append(procs[-1])
            elif not free:
                worker = busy.popleft()
                yield _result(worker)
                free.append(worker)
            worker = free.popleft()
            pickle.dump(args, worker.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            worker.stdin.flush()
            busy.append(worker)
        while busy:
            yield _result(busy.popleft())
    finally:
        for worker in procs:
            worker.stdin.close()
        for worker in procs:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()


def _result(worker: subprocess.Popen) -> Any:
    try:
        ok, value = pickle.load(worker.stdout)
    except EOFError:
        raise WorkerError(f"a worker process ended (exit code {worker.wait()}) before returning its batch;"
                          " its error is above in this log") from None
    if not ok:
        raise WorkerError(value)
    return value


def serve(target: str) -> None:
    """A worker's loop: call target ("module:function") on each pickled argument tuple from stdin, until
    stdin ends; (True, result) or (False, traceback) on stdout. Anything printed goes to stderr."""
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints must not corrupt the results
    source = sys.stdin.buffer
    while True:
        try:
            args = pickle.load(source)
        except EOFError:
            return
        try:
            reply = (True, fn(*args))
        except Exception:  # noqa: BLE001 -- the stage raises it, with this traceback
            reply = (False, traceback.format_exc())
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
