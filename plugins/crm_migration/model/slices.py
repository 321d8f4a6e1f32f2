"""A stage's (lot, run) slice: the building blocks every stage shares. A deterministic sample, the rows of
a slice read in bounded batches through a server-side cursor, a stage's timing recorded for the report,
the process's peak memory. Imports only the database layer."""

from __future__ import annotations

import logging
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


BATCH_ROWS = 20_000  # rows a streaming stage holds at once: its memory stays flat as a slice grows


def batches(url: str, sql: str, params: dict, group: Callable[[dict], Any] | None = None) -> Iterator[list[dict]]:
    """The rows of a query, BATCH_ROWS at a time, through a server-side cursor. group: rows with the same
    group value (ordered together by the query) never straddle two batches (a duplicate legacy id is
    only seen as one when both rows are cleansed together)."""
    with engine(url).connect() as conn, set_wise(conn):  # the slices were just written: no nested loops
        res = conn.execute(sa.text(sql).execution_options(stream_results=True, yield_per=BATCH_ROWS), params)
        carry: list[dict] = []
        for part in res.mappings().partitions(BATCH_ROWS):
            batch = carry + [dict(m) for m in part]
            carry = []
            if group is not None:
                last, cut = group(batch[-1]), len(batch)
                while cut > 0 and group(batch[cut - 1]) == last:
                    cut -= 1
                if cut == 0:  # one group so far: keep reading
                    carry = batch
                    continue
                batch, carry = batch[:cut], batch[cut:]
            yield batch
        if carry:
            yield carry


def peak_mb() -> int:
    """This process's peak resident memory so far, MB (what the task logs beside its phases)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
