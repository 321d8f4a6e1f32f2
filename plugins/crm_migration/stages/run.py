"""Extract, cleanse, dedupe and transform against the databases, each rewriting only its own (lot, run)
slice (the load is crm_migration.load; the building blocks they share, crm_migration.slices).

Each ``run_<stage>`` reads the previous stage's slice, applies the plain functions of
cleanse/dedupe/transform, replaces its slice (streaming stages write in batches) and records its timing.
It returns small JSON-safe metadata (counts) for XCom and the log.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, UTC
from typing import Any
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import sqlalchemy as sa

from crm_migration.rules.cleanse import CLEAN_COLUMNS, cleanse_rows
from crm_migration.model.config import EntityConfig, LotConfig, entity_scopes, validate_key
from crm_migration.stages.checksums import links_changed, ranges_to_read
from crm_migration.stages.contract import check_columns
from crm_migration.model.db import append_slice, copy_rows, engine, replace_slice, sql, upsert_record
from crm_migration.matching import dedupe
from crm_migration.stages import data_owner, relations
from crm_migration.matching.dedupe import dedupe_rows
from crm_migration.source.legacy import (in_buckets, json_row, link_values_sql, modified_of, pg_bucket,
                                         read_with_fallback)
from crm_migration.model.slices import BATCH_ROWS, Progress, batches, in_sample, peak_mb, read_slice, timed
from crm_migration.model.workers import default_processes, in_processes
from crm_migration.source import anonymise
from crm_migration.source.sources import compares_hashes, open_rows
from crm_migration.model.spec import spec
from crm_migration.rules.transform import FOREIGN_KEYS, TARGET_COLUMNS, transform_rows

log = logging.getLogger(__name__)


def _quarantine_rows(rows: list[tuple[Any, str, str, dict]]) -> Iterator[tuple]:
    return ((None if lid is None else str(lid), code, detail, json_row(raw)) for lid, code, detail, raw in rows)


QUARANTINE_COLUMNS = ("legacy_id", "reason_code", "detail", "raw_row")


def _write_quarantine(conn: sa.Connection, lot_id: str, run_id: str, entity: str, stage: str,
                      rows: list[tuple[Any, str, str, dict]]) -> int:
    return replace_slice(conn, "stg.quarantine", {"lot_id": lot_id, "run_id": run_id, "entity": entity,
                                                  "stage": stage}, QUARANTINE_COLUMNS, _quarantine_rows(rows))


def quarantined_ids(url: str, lot_id: str, entity: str, run_id: str, source_run_id: str | None) -> tuple[str, set]:
    """Legacy ids quarantined by source_run_id (default: the lot's latest other run with a report)."""
    with engine(url).connect() as conn:
        if not source_run_id:
            source_run_id = conn.execute(sa.text(
                "SELECT run_id FROM crm_migration.run_report WHERE lot_id = :l AND run_id <> :r"
                " ORDER BY created_at DESC LIMIT 1"), {"l": lot_id, "r": run_id}).scalar()
            if source_run_id is None:
                raise ValueError(f"only_quarantined: lot {lot_id} has no earlier run with a report")
        validate_key(lot_id, source_run_id)
        known = conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM crm_migration.extract_run WHERE lot_id = :l"
                                     " AND run_id = :s)"), {"l": lot_id, "s": source_run_id}).scalar()
        if not known:
            recent = [r[0] for r in conn.execute(sa.text(
                "SELECT run_id FROM crm_migration.run_report WHERE lot_id = :l ORDER BY created_at DESC LIMIT 3"),
                {"l": lot_id})]
            raise ValueError(f"quarantine_run_id {source_run_id!r} names no run of lot {lot_id} (its latest runs:"
                             f" {', '.join(recent) or 'none'}): nothing would be retried. Copy the run id from the"
                             " report of the run whose quarantine you fixed, or leave it empty for the latest run.")
        ids = {r[0] for r in conn.execute(sa.text(
            "SELECT DISTINCT legacy_id FROM stg.quarantine WHERE lot_id = :l AND run_id = :s AND entity = :e"
            " AND legacy_id IS NOT NULL"), {"l": lot_id, "s": source_run_id, "e": entity})}
    return source_run_id, ids


def _applied_hashes(url: str, legacy_url: str, lot: LotConfig, entity: str, windows: dict
                    ) -> tuple[dict[str, str], set[str] | None, int]:
    """(legacy id -> hash of the version the migration last applied (target row first, then the merged entry,
    then the ledger of excluded and quarantined rows), the key ranges to read, the legacy rows of the others):
    only ranges whose checksums differ from the versions applied are read (stages/checksums)."""
    with engine(url).begin() as conn:
        read, same = ranges_to_read(conn, legacy_url, lot, entity, windows, freeze=False)
        in_ranges = "" if read is None else " WHERE bucket = ANY(:b)"
        return dict(conn.execute(sa.text("SELECT legacy_id, row_hash FROM pg_temp.known_version" + in_ranges),
                                 {"b": sorted(read or ())}).all()), read, same


def _links_moved(legacy_url: str, url: str, lot: LotConfig, entity: str, run_id: str) -> set[str]:
    """Migrated rows whose link-table reference (config/entities: through) picks another parent now than
    the one their target row was built from (crm_migration.written): a link row deleted outright has no
    date, so the key sets are compared, every row's chosen parent against the target's record of it -- only
    in the key ranges whose checksums of the chosen parents changed since the last delta's load
    (stages/checksums; kept for this run's load to keep)."""
    es = spec(entity)
    fields = [(es.source_of(n), f.to) for n, f in es.fields.items() if f.through is not None and f.to]
    if not fields:
        return set()
    ranges = links_changed(url, legacy_url, entity, f"{lot.lot_id}/{run_id}")
    in_ranges = "" if ranges is None else f" AND {pg_bucket('legacy_id')} = ANY(:b)"
    with engine(url).connect() as conn:
        built = {to: dict(conn.execute(sa.text(
            "SELECT legacy_id, links -> :c ->> 1 FROM crm_migration.written WHERE entity = :e"
            " AND links -> :c IS NOT NULL" + in_ranges), {"c": to, "e": entity, "b": sorted(ranges or ())}).all())
            for _, to in fields}
    moved = set()
    with engine(legacy_url).connect() as src:
        query = link_values_sql(entity, whole=ranges is None)
        if ranges is not None:
            query = f"SELECT * FROM ({query}) y WHERE {in_buckets(src, 'y.id', ranges)}"
        res = src.execution_options(stream_results=True, yield_per=50_000).execute(sa.text(query))
        keys = list(res.keys())
        at = [(keys.index(col), built[to]) for col, to in fields]
        for row in res:
            lid = str(row[0])
            for i, was in at:
                now = None if row[i] is None else str(row[i]).strip() or None
                if lid in was and now != (was[lid] or None):
                    moved.add(lid)
    if moved:
        log.info("extract %s: %d migrated rows whose link-table parent changed (a link row deleted or"
                 " replaced): read again", entity, len(moved))
    return moved


def run_extract(legacy_url: str, url: str, lot: LotConfig, entity: str, run_id: str,
                sample_fraction: float = 1.0, only_ids: set[str] | None = None,
                windows: dict[str, tuple[str, datetime]] | None = None,
                expand: Callable[[list[tuple]], set[str]] | None = None,
                mask: Callable[[str], str] | None = None, replay: set[str] | None = None) -> dict:
    """Legacy rows into stg.extract; only_ids restricts to those legacy ids (a quarantine rerun), windows
    (the delta sync) to rows of those scopes changed since each scope's window start.

    The legacy clock read at the start is what the watermark advances to (minus a margin); rows
    dated after it are taken but counted as clock-skewed. expand (the delta sync): given the rows read
    (id, hash, JSON), the other legacy ids to read with them (the members of the customers they touch).
    mask (rehearsals on anonymised data, crm_migration.anonymise): applied to each row's JSON before
    anything else sees it; the row hash stays the legacy row's (change detection is unchanged).
    replay (a delta replay: the rehearsal's forecast): migrated ids read as if they had changed.
    Long because the three reads (every row, changed windows, given ids) and the legacy clock's bookkeeping
    share one transaction and one timing.
    """
    validate_key(lot.lot_id, run_id)
    hash_scan = windows is not None and compares_hashes(lot, entity)
    key = {"lot_id": lot.lot_id, "run_id": run_id, "entity": entity}
    columns = ("legacy_id", "row_hash", "data")
    with timed(url, lot.lot_id, run_id, entity, "extract") as st:
        applied, ranges, same = _applied_hashes(url, legacy_url, lot, entity, windows) if hash_scan else ({}, None, 0)
        values = relations.RowValues.of(legacy_url, entity, whole=windows is None)

        def prepared(legacy_id: str | None, data: str) -> str:
            """A row's JSON as staged: its relations' values added (values_of), then masked (rehearsals)."""
            if values is not None:
                data = values(legacy_id, data)
            return mask(data) if mask is not None else data

        kept: list[tuple] = []  # the rows read, for expand (the delta's few): a lot streams them straight on

        with engine(url).begin() as conn:
            def read(tolerant: bool) -> tuple:
                """Stream the legacy rows into the slice (COPY), in a savepoint: a value the driver cannot
                load rolls it back and the rows are read again with tolerant loaders."""
                counts = {"rows_in": same, "skewed": 0, "unchanged": same}  # same: in ranges not read
                progress = Progress(f"extract {entity}")  # the legacy query's total is not known in advance
                kept.clear()
                savepoint = conn.begin_nested()
                try:
                    with open_rows(legacy_url, lot, entity, windows, hash_scan, tolerant=tolerant,
                                   buckets=ranges) as (clock, rows):
                        def taken() -> Iterator[tuple]:
                            for legacy_id, row_hash, data, row in rows:
                                counts["rows_in"] += 1
                                progress.add(1)
                                if counts["rows_in"] == same + 1:  # the extract contract, before anything is written
                                    check_columns(entity, lot.entities[entity], list(row))
                                if not in_sample(legacy_id, sample_fraction):
                                    continue
                                if only_ids is not None and legacy_id not in only_ids:
                                    continue
                                if hash_scan and legacy_id is not None and applied.get(legacy_id) == row_hash:
                                    counts["unchanged"] += 1
                                    continue
                                modified = modified_of(row)
                                if modified is not None and modified > clock:
                                    counts["skewed"] += 1
                                # a delta's rows are prepared once read (their relations' values read for them)
                                yield (legacy_id, row_hash, data if windows is not None else prepared(legacy_id, data))

                        if windows is None:  # a lot streams its rows straight on (kept for expand: a partial run)
                            n = replace_slice(conn, "stg.extract", key, columns,
                                              (kept.append(r) or r for r in taken()) if expand is not None else taken())
                        else:  # a delta's few rows are kept for expand, their values read for them alone
                            kept[:] = list(taken())
                            if values is not None:
                                values.fetch([r[0] for r in kept])
                            kept[:] = [(lid, h, prepared(lid, data)) for lid, h, data in kept]
                            n = replace_slice(conn, "stg.extract", key, columns, kept)
                except BaseException:
                    savepoint.rollback()
                    raise
                savepoint.commit()
                return counts["rows_in"], counts["skewed"], counts["unchanged"], n, clock

            rows_in, skewed, unchanged, n, clock = read_with_fallback(read)
            # the customers they touch may sit in any lot's scope of the entity (a phased lot's other phase)
            scopes = windows if windows is not None else {
                scope: (filt, datetime.min) for scope, filt in entity_scopes(entity).items()}

            def read_ids(ids: list[str]) -> list[tuple]:
                """Rows by id (any of the scopes), appended to the slice, 500 ids a query."""
                out = []
                for start in range(0, len(ids), 500):
                    def read_some(tolerant: bool, some: list = ids[start:start + 500]) -> list:
                        with open_rows(legacy_url, lot, entity, scopes, ids=some, tolerant=tolerant) as (_, rows):
                            got = [(lid, h, data) for lid, h, data, _ in rows]
                        if values is not None:
                            values.fetch([r[0] for r in got])
                        return [(lid, h, prepared(lid, data)) for lid, h, data in got]

                    out += read_with_fallback(read_some)
                if out:
                    append_slice(conn, "stg.extract", key, columns, out)
                return out

            also = set(replay or ())  # read as changed rows: their customers are read with them
            if windows is not None and not hash_scan and spec(entity).links:
                also |= _links_moved(legacy_url, url, lot, entity, run_id)
            if also:
                moved = read_ids(sorted(also - {r[0] for r in kept}))
                kept += moved
                n += len(moved)
            extra = sorted(expand(kept)) if expand is not None else []
            n += len(read_ids(extra))
            window_starts = {lot.lot_id: None} if windows is None else {
                scope: since.isoformat() for scope, (_, since) in windows.items()}
            upsert_record(conn, "crm_migration.extract_run", {"lot_id": lot.lot_id, "run_id": run_id, "entity": entity},
                          {"legacy_clock": clock, "windows": json.dumps(window_starts), "clock_skewed": skewed},
                          jsonb=("windows",))
        st["rows_in"], st["rows_out"] = rows_in, n
    if skewed:
        log.warning("extract %s: %d rows dated after the legacy clock (%s): taken, counted as clock-skewed;"
                    " they do not move the watermark", entity, skewed, clock.isoformat())
    if hash_scan:
        log.info("extract %s: %d rows read, %d unchanged since migrated (same hash), %d taken",
                 entity, rows_in, unchanged, n)
    if extra:
        log.info("extract %s: %d more rows read: the other members of the merged customers that changed",
                 entity, len(extra))
    return {"entity": entity, "legacy_rows": rows_in, "extracted": n, "legacy_clock": clock.isoformat(),
            "clock_skewed": skewed, "cluster_members": len(extra)}


def run_cleanse(url: str, lot: LotConfig, entity: str, run_id: str) -> dict:
    """Cleanse the extracted slice batch by batch (memory flat as the slice grows), in one transaction."""
    validate_key(lot.lot_id, run_id)
    cfg = lot.entities[entity]
    key = {"lot_id": lot.lot_id, "run_id": run_id}
    cols = CLEAN_COLUMNS[entity]
    slices = ((f"stg.{entity}_cleanse", key, cols), ("stg.excluded", {**key, "entity": entity},
                                                   ("legacy_id", "rule", "raw_row")),
              ("stg.quarantine", {**key, "entity": entity, "stage": "cleanse"}, QUARANTINE_COLUMNS))
    counts = {"raw": 0, "clean": 0, "excluded": 0, "quarantined": 0}
    emptied: Counter = Counter()  # unreadable optional values dropped (invalid: empty), by field
    now = datetime.now(UTC)  # one clock for every batch (the age rules)
    # a data owner's corrections, applied before the rules (masked, on a rehearsal of anonymised data)
    fixes, applied = anonymise.masked_corrections(url, entity, data_owner.corrections(entity)), []
    with timed(url, lot.lot_id, run_id, entity, "cleanse") as st:
        with engine(url).begin() as conn:
            for table, k, columns in (*slices, ("crm_migration.correction_applied", {**key, "entity": entity}, ())):
                replace_slice(conn, table, k, columns, ())

            def calls() -> Iterator[tuple]:  # batches of raw rows, corrected, for the rules (maybe elsewhere)
                for raws in batches(url, "SELECT legacy_id, data FROM stg.extract WHERE lot_id = :l AND run_id = :r"
                                    " AND entity = :e ORDER BY legacy_id", {"l": lot.lot_id, "r": run_id, "e": entity},
                                    group=lambda r: r["legacy_id"], progress=f"cleanse {entity}"):
                    datas = [r["data"] for r in raws]
                    if fixes:
                        for i, r in enumerate(raws):
                            if r["legacy_id"] in fixes:
                                datas[i] = data_owner.corrected(datas[i], fixes[r["legacy_id"]], entity)
                                applied.extend(fixes[r["legacy_id"]])
                    yield entity, datas, cfg, now

            for res in in_processes(cleanse_rows, calls(), default_processes()):
                for (table, k, columns), rows in zip(slices, (
                        ([r[c] for c in cols] for r in res.clean),
                        ((lid, rule, json_row(raw)) for lid, rule, raw in res.excluded),
                        _quarantine_rows(res.quarantined)), strict=True):
                    append_slice(conn, table, k, columns, rows)
                counts["raw"] += len(res.clean) + len(res.excluded) + len(res.quarantined)
                emptied.update(res.emptied)
                for name, part in (("clean", res.clean), ("excluded", res.excluded), ("quarantined", res.quarantined)):
                    counts[name] += len(part)
            if applied:
                data_owner.record_applied(conn, lot.lot_id, run_id, entity, applied)
                log.info("cleanse %s: %d corrections of the data owners applied", entity, len(applied))
        st["rows_in"], st["rows_out"] = counts["raw"], counts["clean"]
    if emptied:
        log.warning("cleanse %s: unreadable values left empty (invalid: empty): %s", entity,
                    ", ".join(f"{k} {n}" for k, n in sorted(emptied.items())))
    return {"entity": entity, "clean": counts["clean"], "excluded": counts["excluded"],
            "quarantined": counts["quarantined"], "emptied": dict(emptied)}


def write_dedupe(conn: sa.Connection, lot_id: str, run_id: str, entity: str, survivors: list[dict],
                 merges: list[tuple], review: list[tuple], clusters: list, kept_as_is: Sequence[str] = ()) -> None:
    """The dedupe stage's slices: survivors, the merge map, the review list and the clusters' target ids.
    kept_as_is: survivors that are their clean row as it is (copied in SQL, never read into Python)."""
    from crm_migration.matching.clusters import COLUMNS

    key = {"lot_id": lot_id, "run_id": run_id}
    cols = CLEAN_COLUMNS[entity]
    replace_slice(conn, f"stg.{entity}_dedupe", key, cols, ([r.get(c) for c in cols] for r in survivors))
    if kept_as_is:
        conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS crm_kept (legacy_id text PRIMARY KEY) ON COMMIT DROP")
        copy_rows(conn, "crm_kept", ("legacy_id",), ((lid,) for lid in kept_as_is))
        conn.execute(sa.text(
            f"INSERT INTO stg.{entity}_dedupe (lot_id, run_id, {', '.join(cols)})"
            f" SELECT c.lot_id, c.run_id, {', '.join(f'c.{c}' for c in cols)} FROM stg.{entity}_cleanse c"
            " JOIN crm_kept k ON k.legacy_id = c.legacy_id WHERE c.lot_id = :l AND c.run_id = :r"),
            {"l": lot_id, "r": run_id})
        conn.exec_driver_sql("DROP TABLE crm_kept")
    replace_slice(conn, "stg.merge_map", {**key, "entity": entity},
                  ("legacy_id", "survivor_legacy_id", "score", "rule"), sorted(merges))
    replace_slice(conn, "stg.review_pair", {**key, "entity": entity},
                  ("legacy_id_a", "legacy_id_b", "score", "agreeing"), review)
    replace_slice(conn, "stg.cluster", {**key, "entity": entity}, COLUMNS, (c.row() for c in clusters))


def write_unmatched(conn: sa.Connection, lot_id: str, run_id: str, entity: str,
                    quarantined: Sequence[tuple[str, str, str]]) -> int:
    """The dedupe's quarantine slice: rows the cleanse let through incomplete (rules.cleanse.MATCHABLE) that
    merged into no complete record, each with its defect and its row as extracted."""
    raw: dict[str, dict] = {}
    ids = [lid for lid, _, _ in quarantined]
    if ids:
        raw = dict(conn.execute(sa.text("SELECT legacy_id, data FROM stg.extract WHERE lot_id = :l AND run_id = :r"
                                        " AND entity = :e AND legacy_id = ANY(:ids)"),
                                {"l": lot_id, "r": run_id, "e": entity, "ids": ids}).all())
    return _write_quarantine(conn, lot_id, run_id, entity, "dedupe",
                             [(lid, code, detail, raw.get(lid) or {}) for lid, code, detail in quarantined])


def save_model(conn: sa.Connection, lot_id: str, run_id: str, entity: str, model: dict | None) -> None:
    """The run's learned match model, rewritten with its (lot, run) slice; none learned: none kept."""
    conn.execute(sa.text("DELETE FROM crm_migration.match_model WHERE lot_id = :l AND run_id = :r AND entity = :e"),
                 {"l": lot_id, "r": run_id, "e": entity})
    if model is not None:
        conn.execute(sa.text("INSERT INTO crm_migration.match_model (lot_id, run_id, entity, model)"
                             " VALUES (:l, :r, :e, CAST(:m AS jsonb))"),
                     {"l": lot_id, "r": run_id, "e": entity, "m": json.dumps(model)})


def latest_model(conn: sa.Connection, entity: str) -> dict | None:
    """The entity's most recently learned match model (the delta scores with it)."""
    return conn.execute(sa.text("SELECT model FROM crm_migration.match_model WHERE entity = :e"
                                " ORDER BY learned_at DESC, run_id DESC LIMIT 1"), {"e": entity}).scalar_one_or_none()


def seen_ids(conn: sa.Connection, lot_id: str, run_id: str, entity: str) -> set[str]:
    """Legacy ids this run read (whatever their fate)."""
    return {r[0] for r in conn.execute(sa.text(
        "SELECT DISTINCT legacy_id FROM stg.extract WHERE lot_id = :l AND run_id = :r AND entity = :e"
        " AND legacy_id IS NOT NULL"), {"l": lot_id, "r": run_id, "e": entity})}


def _clean_rows(url: str, lot_id: str, run_id: str, entity: str, ids: list[str], positions: list[int],
                columns: Sequence[str] | None) -> dict[int, dict]:
    """Clean rows at positions of ids (all columns, or those of columns the clean table has), by position."""
    cols = [c for c in (columns or CLEAN_COLUMNS[entity]) if c in CLEAN_COLUMNS[entity]]
    cols = ["legacy_id", *(c for c in cols if c != "legacy_id")]
    at = {ids[p]: p for p in positions}
    out: dict[int, dict] = {}
    wanted = sorted(at)
    with engine(url).connect() as conn:
        for k in range(0, len(wanted), 50_000):
            res = conn.execute(sa.text(f"SELECT {', '.join(cols)} FROM stg.{entity}_cleanse WHERE lot_id = :l"
                                       " AND run_id = :r AND legacy_id = ANY(:ids)"),
                               {"l": lot_id, "r": run_id, "ids": wanted[k:k + 50_000]})
            for m in res.mappings():
                out[at[m["legacy_id"]]] = dict(m)
    return out


def _defects(conn: sa.Connection, lot_id: str, run_id: str, entity: str) -> dict[str, str]:
    """legacy id -> defect of the clean rows the cleanse let through incomplete (rules.cleanse.MATCHABLE)."""
    return dict(conn.execute(sa.text(f"SELECT legacy_id, defect FROM stg.{entity}_cleanse WHERE lot_id = :l"
                                     " AND run_id = :r AND defect IS NOT NULL"), {"l": lot_id, "r": run_id}).all())


def _laps(what: str) -> Callable[[str], None]:
    """lap(done) logs what was done, the seconds since the last lap and the task's peak memory so far (the
    person on call sees where a long task spends its time)."""

    last = [time.perf_counter()]

    def lap(done: str) -> None:
        now = time.perf_counter()
        log.info("%s: %s in %.1f s (task peak so far %d MB)", what, done, now - last[0], peak_mb())
        last[0] = now

    return lap


def run_dedupe(url: str, lot: LotConfig, entity: str, run_id: str) -> dict:
    """Clusters of duplicates, each keeping the target id its rows already map to (clusters.py). The pairs
    of a lot that learns its weights were scored by dedupe_prepare / dedupe_score tasks when they ran for
    this run (crm_migration.partitioned); otherwise they are scored here."""
    from crm_migration.matching import clusters as cl
    from crm_migration.matching import partitioned

    validate_key(lot.lot_id, run_id)
    cfg = lot.entities[entity]
    cols = CLEAN_COLUMNS[entity]
    lap = _laps(f"dedupe of {entity}")
    with timed(url, lot.lot_id, run_id, entity, "dedupe") as st:
        with engine(url).connect() as conn:
            # in the order dedupe_prepare read them (the partitions' pairs point at positions in it)
            ids = list(conn.execute(sa.text(f"SELECT legacy_id FROM stg.{entity}_cleanse WHERE lot_id = :l"
                                            " AND run_id = :r ORDER BY legacy_id"),
                                    {"l": lot.lot_id, "r": run_id}).scalars())
            labels = cl.labels_of(conn, entity, ids)
            seen = seen_ids(conn, lot.lot_id, run_id, entity) if labels else set()
            defects = _defects(conn, lot.lot_id, run_id, entity)
        lap(f"{len(ids)} ids and {len(labels)} target ids read; {len(defects)} rows incomplete (a twin may mend them)")
        prescored = partitioned.collect(url, lot, entity, run_id, ids)
        if prescored is not None:
            # a partitioned lot: ids and pairs in memory, rows read when needed
            lap(f"{len(prescored[0])} scored pairs read from the partitions")

            def rows_of(positions: list[int], columns: list[str] | None) -> dict[int, dict]:
                return _clean_rows(url, lot.lot_id, run_id, entity, ids, positions, columns)

            res = dedupe.dedupe_prescored(entity, ids, cfg.dedupe, prescored, rows_of, labels=labels,
                                          defects=defects)
        else:
            with engine(url).connect() as conn:
                rows = read_slice(conn, f"stg.{entity}_cleanse", cols, lot.lot_id, run_id)
            res = dedupe_rows(entity, rows, cfg.dedupe, labels=labels,
                              partitions=partitioned.partitions_for(len(rows), cfg.dedupe.partitions))
            del rows
        lap(f"clustered: {len(res.survivors) + len(res.kept_as_is)} survivors, {len(res.review)} pairs for review")
        with engine(url).connect() as conn:
            clusters, joined = cl.resolve_lot(conn, entity, res.merges, labels, seen)
        lap("clusters' target ids resolved")
        survivors = [r for r in res.survivors if r["legacy_id"] not in joined]
        kept_as_is = [lid for lid in res.kept_as_is if lid not in joined]
        merges = [(lid, joined.get(s, s), score, "joined" if s in joined else rule)
                  for lid, s, score, rule in res.merges]
        with engine(url).begin() as conn:
            write_dedupe(conn, lot.lot_id, run_id, entity, survivors, merges, res.review, clusters, kept_as_is)
            write_unmatched(conn, lot.lot_id, run_id, entity, res.quarantined)
            save_model(conn, lot.lot_id, run_id, entity, res.model)
        lap("survivors, merge map, review list and clusters written")
        st["rows_in"], st["rows_out"] = len(ids), len(survivors) + len(kept_as_is)
    merged = len(ids) - st["rows_out"] - len(res.quarantined)
    events = cl.counts(clusters)
    log.info("dedupe %s: %d pairs compared (n^2/2 = %d), %d merged, %d pairs to review,"
             " %d oversized clusters left unmerged; clusters: %s", entity, res.pairs_compared,
             len(ids) * (len(ids) - 1) // 2, merged, len(res.review), res.oversized_clusters,
             ", ".join(f"{k} {v}" for k, v in events.items() if v))
    return {"entity": entity, "survivors": st["rows_out"], "merged": merged, "review_pairs": len(res.review),
            "pairs_compared": res.pairs_compared, "clusters": events, "quarantined": len(res.quarantined)}


def _crosswalk(conn: sa.Connection, parents: set[str]) -> dict[str, dict]:
    xw: dict[str, dict] = {p: {} for p in parents}
    if parents:
        res = conn.execute(sa.text("SELECT entity, legacy_id, new_id FROM crm_migration.crosswalk"
                                   " WHERE entity = ANY(:p)"), {"p": sorted(parents)})
        for entity, legacy_id, new_id in res:
            xw[entity][legacy_id] = new_id
    return xw


def _explain_orphans(url: str, entity: str, quarantined: list[tuple]) -> list[tuple]:
    """FK_ORPHAN details say what became of the parent, when it was seen: excluded by a rule, or
    quarantined with a reason (the person on call then knows whether to fix data or config)."""
    wanted = {(parent, r[col]) for _, code, _, r in quarantined if code == "FK_ORPHAN"
              for col, parent, _ in FOREIGN_KEYS[entity] if r.get(col)}
    if not wanted:
        return quarantined
    fate: dict[tuple, str] = {}
    with engine(url).connect() as conn:
        for parent in {p for p, _ in wanted}:
            ids = [i for p, i in wanted if p == parent]
            for lid, why in conn.execute(sql("stages/parent_fates.sql"), {"e": parent, "ids": ids}):
                fate[(parent, lid)] = why
    out = []
    for lid, code, detail, row in quarantined:
        if code == "FK_ORPHAN":
            notes = [f"{parent} {row[col]} was {fate[(parent, row[col])]}" for col, parent, _ in FOREIGN_KEYS[entity]
                     if (parent, row.get(col)) in fate]
            fallback = "the parent was not seen by any lot run (missing from the legacy CRM, or outside the filters)"
            detail = f"{detail}; {'; '.join(notes) if notes else fallback}"
        out.append((lid, code, detail, row))
    return out


SURVIVOR_QUARANTINED = "SURVIVOR_QUARANTINED"


def _members_of_quarantined(url: str, entity: str, lot_id: str, run_id: str, quarantined: list[tuple]) -> list[tuple]:
    """Rows merged into a survivor that is quarantined go to the quarantine with it: fixing the
    survivor's data and rerunning brings the whole cluster in; nothing is left merged into nothing."""
    why = {lid: code for lid, code, _, _ in quarantined if lid is not None}
    if not why:
        return []
    with engine(url).connect() as conn:
        members = conn.execute(sa.text(
            "SELECT legacy_id, survivor_legacy_id FROM stg.merge_map WHERE lot_id = :l AND run_id = :r AND entity = :e"
            " AND legacy_id <> survivor_legacy_id AND survivor_legacy_id = ANY(:ids) AND rule <> 'joined'"
            " ORDER BY legacy_id"),
            {"l": lot_id, "r": run_id, "e": entity, "ids": sorted(why)}).all()
        rows = dict(conn.execute(sa.text(
            f"SELECT c.legacy_id, to_jsonb(c) FROM stg.{entity}_cleanse c WHERE c.lot_id = :l AND c.run_id = :r"
            " AND c.legacy_id = ANY(:ids)"), {"l": lot_id, "r": run_id, "ids": [m[0] for m in members]}).all()
                    ) if members else {}
    members = [(lid, survivor, rows.get(lid)) for lid, survivor in members]
    return [(lid, SURVIVOR_QUARANTINED, f"merged into {survivor}, which is quarantined ({why[survivor]})",
             row or {"legacy_id": lid}) for lid, survivor, row in members]


def run_transform(url: str, lot: LotConfig, entity: str, run_id: str) -> dict:
    """Map the deduplicated slice to target rows batch by batch (memory flat as the slice grows; the
    parents' crosswalk is the one thing held whole), in one transaction."""
    validate_key(lot.lot_id, run_id)
    cfg: EntityConfig = lot.entities[entity]
    key = {"lot_id": lot.lot_id, "run_id": run_id}
    params = {"l": lot.lot_id, "r": run_id, "e": entity}
    cols = TARGET_COLUMNS[entity]
    # each row with its cluster's target id and the legacy version it was built from (freeze diff)
    read = (f"SELECT {', '.join(f'd.{c}' for c in CLEAN_COLUMNS[entity])}, c.cluster_id AS crm_cluster_id,"
            " h.row_hash AS crm_row_hash"
            f" FROM stg.{entity}_dedupe d"
            " LEFT JOIN (SELECT DISTINCT ON (survivor_legacy_id) survivor_legacy_id, cluster_id FROM stg.cluster"
            "   WHERE lot_id = :l AND run_id = :r AND entity = :e) c ON c.survivor_legacy_id = d.legacy_id"
            " LEFT JOIN (SELECT legacy_id, min(row_hash) AS row_hash FROM stg.extract"
            "   WHERE lot_id = :l AND run_id = :r AND entity = :e GROUP BY legacy_id) h ON h.legacy_id = d.legacy_id"
            " WHERE d.lot_id = :l AND d.run_id = :r ORDER BY d.legacy_id")
    rows_in, rows_out, quarantined, defaulted = 0, 0, [], Counter()
    with timed(url, lot.lot_id, run_id, entity, "transform") as st:
        with engine(url).connect() as conn:
            crosswalk = _crosswalk(conn, {parent for _, parent, _ in FOREIGN_KEYS[entity]})
        with engine(url).begin() as conn:
            replace_slice(conn, f"stg.{entity}_transform", key, (*cols, "row_hash", "links"), ())
            replace_slice(conn, "stg.quarantine", {**key, "entity": entity, "stage": "transform"},
                          QUARANTINE_COLUMNS, ())
            for rows in batches(url, read, params, progress=f"transform {entity}"):
                ids = {r["legacy_id"]: r.pop("crm_cluster_id") for r in rows}
                hashes = {r["legacy_id"]: r.pop("crm_row_hash") for r in rows}
                res = transform_rows(entity, rows, cfg, crosswalk, {k: v for k, v in ids.items() if v is not None})
                batch_quarantined = _explain_orphans(url, entity, res.quarantined)
                append_slice(conn, f"stg.{entity}_transform", key, (*cols, "row_hash", "links"),
                             ([*(r[c] for c in cols), hashes.get(str(r["legacy_id"])), json.dumps(r["links"])]
                              for r in res.rows))
                append_slice(conn, "stg.quarantine", {**key, "entity": entity, "stage": "transform"},
                             QUARANTINE_COLUMNS, _quarantine_rows(batch_quarantined))
                rows_in, rows_out = rows_in + len(rows), rows_out + len(res.rows)
                quarantined += batch_quarantined
                defaulted.update(res.defaulted)
            followers = _members_of_quarantined(url, entity, lot.lot_id, run_id, quarantined)
            append_slice(conn, "stg.quarantine", {**key, "entity": entity, "stage": "transform"},
                         QUARANTINE_COLUMNS, _quarantine_rows(followers))
            conn.execute(sa.text(
                "INSERT INTO crm_migration.transform_outcome (lot_id, run_id, entity, defaulted)"
                " VALUES (:l, :r, :e, CAST(:d AS jsonb)) ON CONFLICT (lot_id, run_id, entity)"
                " DO UPDATE SET defaulted = EXCLUDED.defaulted"), {**params, "d": json.dumps(dict(defaulted))})
        if rows_out >= BATCH_ROWS:  # a large slice's statistics (the load's checks join it whole; a delta's
            with engine(url).begin() as conn:  # few rows are what a slice without statistics is taken for)
                conn.exec_driver_sql(f"ANALYZE stg.{entity}_transform")
        st["rows_in"], st["rows_out"] = rows_in, rows_out
    for name, n in defaulted.items():
        log.warning("transform %s: %d rows had an empty or unknown %s: given its default (%s)", entity, n, name,
                    spec(entity).fields[name].default)
    return {"entity": entity, "target_rows": rows_out, "quarantined": len(quarantined) + len(followers)}
