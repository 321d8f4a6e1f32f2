"""A stage's (lot, run) slice: the building blocks every stage shares. A deterministic sample, the rows of
a slice read in bounded batches through a server-side cursor, a stage's timing recorded for the report,
the process's peak memory. Imports only the database layer."""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from crm_migration.model.db import engine, set_wise, upsert_record

log = logging.getLogger(__name__)


def in_sample(legacy_id: Any, fraction: float) -> bool:
    """Deterministic sample: the same ids are picked on every run for a given fraction."""
    if fraction >= 1.0:
        return True
    return zlib.crc32(str(legacy_id).encode()) % 1_000_000 < fraction * 1_000_000


@contextmanager
def timed(url: str, lot_id: str, run_id: str, entity: str, stage: str) -> Iterator[dict]:
    """Time a stage; the body fills stats['rows_in'] and stats['rows_out']."""
    stats: dict = {"rows_in": None, "rows_out": None}
    t0 = time.perf_counter()
    yield stats
    seconds = round(time.perf_counter() - t0, 3)
    stats["seconds"] = seconds
    record_timing(url, lot_id, run_id, entity, stage, stats["rows_in"], stats["rows_out"], seconds)


def record_timing(url: str, lot_id: str, run_id: str, entity: str, stage: str, rows_in: int | None,
                  rows_out: int | None, seconds: float) -> None:
    """One stage's rows and seconds in crm_migration.stage_timing (the report's time per stage)."""
    with engine(url).begin() as conn:
        upsert_record(
            conn, "crm_migration.stage_timing", {"lot_id": lot_id, "run_id": run_id, "entity": entity, "stage": stage},
            {"rows_in": rows_in, "rows_out": rows_out, "seconds": seconds}, touch="finished_at",
        )
    log.info("%s %s: %s rows in, %s rows out, %.2f s", stage, entity, rows_in, rows_out, seconds)


def read_slice(conn: sa.Connection, table: str, columns: tuple[str, ...], lot_id: str, run_id: str,
                extra: str = "") -> list[dict]:
    res = conn.execute(
        sa.text(f"SELECT {', '.join(columns)} FROM {table} WHERE lot_id = :l AND run_id = :r {extra}"
                " ORDER BY legacy_id"),
        {"l": lot_id, "r": run_id},
    )
    return [dict(m) for m in res.mappings()]


# rows a streaming stage holds at once: its memory stays flat as a slice grows (CRM_BATCH_ROWS: fewer for
# less memory, more for less overhead per batch)
BATCH_ROWS = int(os.environ.get("CRM_BATCH_ROWS") or 20_000)
PROGRESS_SECONDS = 10.0  # a long stage logs its progress this often


class Progress:
    """Progress of a long step in its task's log, about every PROGRESS_SECONDS: rows done / total, the rate
    and the time left (``cleanse contacts: 240,000 / 1,000,000 rows (24 %), 21,310 rows/s, about 36 s left``).
    total None: rows done and the rate only; a callable: asked once, at the first line (a stage done within
    PROGRESS_SECONDS never counts its rows)."""

    def __init__(self, label: str, total: int | Callable[[], int] | None = None, every: float | None = None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.every = PROGRESS_SECONDS if every is None else every
        self.start = self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.done / elapsed
        if callable(self.total):
            self.total = self.total()
        if not self.total:
            return f"{self.label}: {self.done:,} rows, {rate:,.0f} rows/s"
        left = (self.total - self.done) / rate if rate else float("inf")
        return (f"{self.label}: {self.done:,} / {self.total:,} rows ({100 * self.done / self.total:.0f} %),"
                f" {rate:,.0f} rows/s, about {left:,.0f} s left")


def batches(url: str, sql: str, params: dict, group: Callable[[dict], Any] | None = None,
            progress: str | None = None) -> Iterator[list[dict]]:
    """The rows of a query, BATCH_ROWS at a time, through a server-side cursor. group: rows with the same
    group value (ordered together by the query) never straddle two batches (a duplicate legacy id is
    only seen as one when both rows are cleansed together). progress: a label; the rows done of the query's
    total are logged about every PROGRESS_SECONDS (Progress)."""
    with engine(url).connect() as conn, set_wise(conn):  # the slices were just written: no nested loops
        def total() -> int:
            with engine(url).connect() as other:  # this connection's cursor is still open
                return other.execute(sa.text(f"SELECT count(*) FROM ({sql}) AS q"), params).scalar_one()

        track = Progress(progress, total) if progress is not None else None
        res = conn.execute(sa.text(sql).execution_options(stream_results=True, yield_per=BATCH_ROWS), params)
        carry: list[dict] = []
        for part in res.mappings().partitions(BATCH_ROWS):
            batch = carry + [dict(m) for m in part]
            carry = []
            if group is not None and len(part) == BATCH_ROWS:  # (a shorter part is the last: nothing to carry)
                last, cut = group(batch[-1]), len(batch)
                while cut > 0 and group(batch[cut - 1]) == last:
                    cut -= 1
                if cut == 0:  # one group so far: keep reading
                    carry = batch
                    continue
                batch, carry = batch[:cut], batch[cut:]
            yield batch
            if track is not None:
                track.add(len(batch))
        if carry:
            yield carry


def peak_mb() -> int:
    """This process's peak resident memory so far, MB (what the task logs beside its phases)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
