"""Reconciliation by id, from outside: legacy rows read again from the legacy source, compared with
the target, never with our own staging counts.

Each in-scope legacy row is read with its hash (``legacy.iter_rows``, the extract's own hashing),
copied into a temporary table of the target database, and classified with joins by id:

- ``loaded``: an active target row with that legacy id holding this version (same hash, or a newer one);
- ``merged``: a merged entry holding this version whose survivor is an active target row;
- ``excluded`` / ``quarantined``: by the run itself, or the ledger's last fate of this version;
- ``changed_since_read``: changed in the legacy CRM after the run read it (the next delta takes it);
- ``survivor_missing``: merged into a survivor that is not an active target row;
- ``stale``: known to the target or the ledger, but in an older version;
- ``lost``: nowhere.

After a load, lost, stale and survivor_missing fail the loaded gate and the report's identity. The
freeze run compares every in-scope row of every scope and fails on anything but loaded, merged and
excluded, and on active target rows that the legacy side no longer has.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from crm_migration.model.config import LotConfig, entity_scopes, validate_key
from crm_migration.stages.content import Findings, verify_run, verify_target
from crm_migration.stages.data_owner import waived_sql
from crm_migration.model.db import copy_rows, engine, set_wise, sql, sql_text, upsert_record
from crm_migration.source.legacy import pg_bucket, read_with_fallback
from crm_migration.model.masking import mask_id
from crm_migration.source.sources import compares_hashes, open_keys
from crm_migration.model.slices import in_sample
from crm_migration.stages.checksums import ranges_to_read
from crm_migration.rules.transform import TARGET_TABLE
from crm_migration.model.outcomes import ROW_OUTCOMES, WAIVED

log = logging.getLogger(__name__)

# what the target holds (crm_migration.content): per target row, beside each legacy row's fate
RUN_CONTENT = ("content_mismatch", "link_missing", "link_wrong")
FREEZE_CONTENT = ("drifted", "unverified", "link_missing", "link_wrong")
RUN_FAILURES = ("lost", "stale", "survivor_missing", *RUN_CONTENT)
FREEZE_FAILURES = ("lost", "stale", "survivor_missing", "changed_since_read", "quarantined", "only_in_target",
                   *FREEZE_CONTENT)
FATES = (*ROW_OUTCOMES, WAIVED, "changed_since_read", "lost", "stale", "survivor_missing")
SAMPLE_IDS = 20

@dataclass
class Reconciliation:
    entity: str
    counts: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)  # kind -> up to SAMPLE_IDS legacy ids (masked)
    in_scope: int = 0
    seconds: float = 0.0
    failure_kinds: tuple[str, ...] = RUN_FAILURES
    waivers: dict = field(default_factory=dict)  # the freeze: waiver -> rows it accounts for
    content_seconds: float = 0.0  # of seconds: the check of what the target rows hold

    @property
    def failed(self) -> int:
        return sum(self.counts.get(k, 0) for k in self.failure_kinds)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        head = f"reconciliation of {self.entity} by id against the target: {self.in_scope} legacy rows: {parts}"
        if self.ok:
            return head + " -- every row accounted for"
        lines = [head + f" -- {self.failed} NOT accounted for"]
        lines += [f"  {k}: {', '.join(ids)}" for k, ids in self.failures.items() if ids]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "in_scope": self.in_scope, "counts": self.counts, "failures": self.failures,
                "waivers": self.waivers, "seconds": round(self.seconds, 3)}


def _snapshot(conn: sa.Connection, legacy_url: str, lot: LotConfig, entity: str, windows: dict | None,
              whole_scopes: bool, keep=None, buckets: set[str] | None = None) -> tuple[int, datetime]:
    """Legacy rows (the lot's scope, or a delta's windows; only those key ranges with buckets) into
    pg_temp.legacy_snapshot (legacy_id, row_hash, modified); returns (rows, legacy clock at the read)."""
    conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS legacy_snapshot (legacy_id text, row_hash text,"
                         " modified timestamptz) ON COMMIT DROP")

    def read(tolerant: bool) -> tuple[int, datetime]:
        conn.exec_driver_sql("TRUNCATE pg_temp.legacy_snapshot")
        with conn.begin_nested(), open_keys(legacy_url, lot, entity, windows, whole_scopes, tolerant,
                                            buckets) as (clock, keys):  # a failed first read rolls back alone
            rows = ((lid, h, modified) for lid, h, modified in keys
                    if lid is not None and (keep is None or keep(lid)))
            return copy_rows(conn, "pg_temp.legacy_snapshot", ("legacy_id", "row_hash", "modified"), rows), clock

    n, clock = read_with_fallback(read)
    conn.exec_driver_sql("ANALYZE pg_temp.legacy_snapshot")
    return n, clock


def _classify(conn: sa.Connection, entity: str, read_at: datetime, failure_kinds: tuple[str, ...],
              with_only_in_target: bool, lot_id: str = "", run_id: str = "", waive: bool = False,
              read: set[str] | None = None) -> Reconciliation:
    """The fates of the rows in pg_temp.legacy_snapshot; with read (the freeze by key range), those were the
    rows of these key ranges only: every other range's rows take their known fate (pg_temp.known_version)."""
    rec = Reconciliation(entity, counts=dict.fromkeys(FATES, 0), failure_kinds=failure_kinds)
    samples: dict[str, list[str]] = {}
    target = TARGET_TABLE[entity]
    with set_wise(conn):  # counted in the database: only the first failing ids come back
        classify = sql_text("checks/classify.sql", target=target)
        conn.execute(sa.text("CREATE TEMP TABLE legacy_fate ON COMMIT DROP AS " + classify),
                     {"e": entity, "read_at": read_at, "l": lot_id, "r": run_id})
        if read is not None:
            conn.execute(sa.text("INSERT INTO pg_temp.legacy_fate (legacy_id, fate) SELECT legacy_id, fate"
                                 " FROM pg_temp.known_version WHERE bucket <> ALL(:b)"), {"b": sorted(read)})
    if waive:  # quarantined rows a data owner accepted as not migrated (crm_migration.data_owner)
        sql, params = waived_sql(entity)
        conn.execute(sa.text(sql), params)
        conn.execute(sa.text("UPDATE pg_temp.legacy_fate f SET fate = 'waived' FROM pg_temp.waived w"
                             " WHERE w.legacy_id = f.legacy_id AND f.fate = 'quarantined'"))
        rec.waivers = dict(conn.execute(sa.text(
            "SELECT w.waiver, count(*) FROM pg_temp.legacy_fate f JOIN pg_temp.waived w ON w.legacy_id = f.legacy_id"
            " WHERE f.fate = 'waived' GROUP BY 1 ORDER BY 1")).all())
        conn.exec_driver_sql("DROP TABLE pg_temp.waived")
    rec.counts.update(dict(conn.exec_driver_sql("SELECT fate, count(*) FROM pg_temp.legacy_fate GROUP BY 1").all()))
    for fate, legacy_id in conn.execute(sa.text(
            "SELECT fate, legacy_id FROM (SELECT fate, legacy_id, row_number() OVER (PARTITION BY fate"
            " ORDER BY legacy_id) AS n FROM pg_temp.legacy_fate WHERE fate = ANY(:f)) x WHERE n <= :k"
            " ORDER BY fate, legacy_id"), {"f": list(failure_kinds), "k": SAMPLE_IDS}):
        samples.setdefault(fate, []).append(mask_id(legacy_id))
    conn.exec_driver_sql("DROP TABLE pg_temp.legacy_fate")
    if with_only_in_target:  # in the ranges read: another range holds every id its known versions hold
        ranges = "" if read is None else f" WHERE {pg_bucket('x.legacy_id')} = ANY(:b)"
        with set_wise(conn):
            n, first = conn.execute(sa.text(
                f"SELECT count(*), (array_agg(legacy_id ORDER BY legacy_id))[1:{SAMPLE_IDS}]"
                f" FROM ({sql_text('checks/only_in_target.sql', target=target)}) x{ranges}"),
                {"b": sorted(read or ())}).one()
        rec.counts["only_in_target"] = n
        if n:
            samples["only_in_target"] = [mask_id(i) for i in first]
    rec.in_scope = sum(v for k, v in rec.counts.items() if k in FATES)
    rec.failures = samples
    return rec


def _add_content(rec: Reconciliation, found: Findings) -> None:
    """Content findings beside the fates: counted per kind, the first ids with the columns that differ
    (opaque ids in clear: they are what a data owner looks the rows up by)."""
    rec.counts.update(found.counts)
    for kind, ids in found.samples.items():
        rec.failures[kind] = ids[:SAMPLE_IDS]


def _run_scope(url: str, lot: LotConfig, entity: str, run_id: str) -> tuple[dict | None, bool, datetime | None]:
    """How to read this run's scope again (delta windows, whole scopes), and the legacy clock at the
    run's extract."""
    with engine(url).connect() as conn:
        row = conn.execute(sa.text("SELECT legacy_clock, windows FROM crm_migration.extract_run"
                                   " WHERE lot_id = :l AND run_id = :r AND entity = :e"),
                           {"l": lot.lot_id, "r": run_id, "e": entity}).first()
    if row is None:
        raise ValueError(f"{entity} of {lot.lot_id}/{run_id} was never extracted: nothing to reconcile")
    clock, windows = row
    if lot.lot_id in windows and windows[lot.lot_id] is None:  # a lot run: its whole scope
        return None, False, clock
    filters = entity_scopes(entity)
    spans = {scope: (filters[scope], datetime.fromisoformat(since)) for scope, since in windows.items()
             if scope in filters}
    return spans, compares_hashes(lot, entity), clock


def reconcile_run(url: str, legacy_url: str, lot: LotConfig, entity: str, run_id: str,
                  sample_fraction: float = 1.0, only_ids: set[str] | None = None) -> Reconciliation:
    """After a load: every legacy row of the run's scope (read again from the legacy source) is in
    the target, merged into a target row, excluded or quarantined. Stored for the report. A delta comparing
    hashes (its scope is every row) reads only the key ranges whose checksums differ, as the freeze does."""
    validate_key(lot.lot_id, run_id)
    t0 = time.perf_counter()
    windows, whole_scopes, read_at = _run_scope(url, lot, entity, run_id)

    def keep(lid: str) -> bool:
        return in_sample(lid, sample_fraction) and (only_ids is None or lid in only_ids)

    with engine(url).begin() as conn:
        read = None
        if whole_scopes and sample_fraction >= 1.0 and only_ids is None:
            read, _ = ranges_to_read(conn, legacy_url, lot, entity, windows, freeze=True)
        _snapshot(conn, legacy_url, lot, entity, windows, whole_scopes, keep, buckets=read)
        rec = _classify(conn, entity, read_at, RUN_FAILURES, with_only_in_target=False, lot_id=lot.lot_id,
                        run_id=run_id, read=read)
        _add_content(rec, verify_run(url, entity, lot.lot_id, run_id))
        rec.seconds = time.perf_counter() - t0
        upsert_record(conn, "crm_migration.reconciliation", {"lot_id": lot.lot_id, "run_id": run_id, "entity": entity},
                      {"ok": rec.ok, "counts": json.dumps({**rec.counts, "in_scope": rec.in_scope}),
                       "failures": json.dumps(rec.failures)}, jsonb=("counts", "failures"), touch="checked_at")
    log.info("%s (%.1f s)", rec.summary(), rec.seconds)
    return rec


def stored(url: str, lot_id: str, run_id: str, entity: str) -> dict | None:
    """The run's reconciliation if it was checked after the entity's last load of the run."""
    with engine(url).connect() as conn:
        row = conn.execute(sql("checks/latest_reconciliation.sql"), {"l": lot_id, "r": run_id, "e": entity}).first()
    if row is None:
        return None
    counts = dict(row.counts)
    return {"ok": row.ok, "in_scope": counts.pop("in_scope", None), "counts": counts, "failures": row.failures}


def _verify_target_timed(url: str, entity: str) -> tuple[Findings, float]:
    t = time.perf_counter()
    return verify_target(url, entity), time.perf_counter() - t


def freeze_compare(url: str, legacy_url: str, lot: LotConfig, entity: str) -> Reconciliation:
    """The cutover's last word: every legacy row of every lot's scope against the target, by key and
    hash (joined values included: the extract query's e-mail and links are part of the hash)."""
    t0 = time.perf_counter()
    scopes = entity_scopes(entity)
    # the content check reads only the target: it runs on its own connection beside the legacy read
    with ThreadPoolExecutor(1, thread_name_prefix=f"content-{entity}") as pool:
        content = pool.submit(_verify_target_timed, url, entity)
        with engine(url).begin() as conn:
            windows = {s: (f, datetime.min) for s, f in scopes.items()}
            read, _ = ranges_to_read(conn, legacy_url, lot, entity, windows, freeze=True)
            n, clock = _snapshot(conn, legacy_url, lot, entity, windows, whole_scopes=True, buckets=read)
            rec = _classify(conn, entity, clock, FREEZE_FAILURES, with_only_in_target=True, waive=True, read=read)
        found, rec.content_seconds = content.result()
    _add_content(rec, found)
    rec.seconds = time.perf_counter() - t0
    log.info("freeze: %s (%d rows in %.1f s, %d of them read row by row; content and links of the target rows"
             " %.1f s)", rec.summary(), rec.in_scope, rec.seconds, n, rec.content_seconds)
    return rec
