"""A lot's dedupe over several tasks: prepare -> score, one mapped task per partition -> cluster.

prepare (`dedupe_prepare_<entity>`) reads the clean slice once, computes each row's compared values
and blocking keys (Python: the transforms are jellyfish's), hands them to an in-process DuckDB once and
frees them; there, in SQL, it puts large blocks in windows, learns the match model
(crm_migration.linkage.learn_table: Splink's u and EM), each adjusted value's term frequency over the
whole lot and each key value's partition, and writes them as CSV into ``stg.dedupe_input`` with the plan
(``stg.dedupe_plan``). Each mapped ``dedupe_score_<entity>`` task
reads the rows of its partition and scores the pairs whose first shared key value falls in it (so a
pair is scored once over the partitions, on whichever worker runs it), keeping the histogram of all
their weights and the pairs above a cut from the partition's own share of matches, a few times looser
than it (``stg.dedupe_score``, ``stg.dedupe_pair``; ``linkage.partition_cut``). ``dedupe_<entity>``
then learns the prior from every partition's histogram, cuts (scoring again any partition that kept too
few: its share was untypical), clusters, picks survivors and writes the stage's slices, as the
single-task dedupe does: the result is the same whatever the number of partitions (tested). Lots that
do not learn weights (the weighted method, or too few rows) have nothing to partition: their dedupe
task does all of it.

Each task rewrites its own (lot, run, entity[, partition]) slice: any of them can be cleared and rerun.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time

import sqlalchemy as sa

from crm_migration.model.config import LotConfig, validate_key
from crm_migration.model.db import copy_csv_file, engine, replace_slice
from crm_migration.model.slices import batches, peak_mb, record_timing, timed

log = logging.getLogger(__name__)
ROWS_PER_PARTITION = 500_000  # default partitions: one per this many (row, key value)s: ~1.1 GB for a partition task
MAX_PARTITIONS = 256


class StalePlan(RuntimeError):
    """The clean slice changed since dedupe_prepare ran: its plan no longer describes the rows."""


def partitions_for(n_rows: int, configured: int | None, n_keys: int = 1) -> int:
    """The partitions of a lot's dedupe: configured (dedupe.partitions), else one per ROWS_PER_PARTITION
    key values (a row is in the partition of each of its n_keys key values, so a partition holds about
    n_rows * n_keys / partitions rows)."""
    if configured:
        return configured
    return max(1, min(MAX_PARTITIONS, math.ceil(n_rows * max(1, n_keys) / ROWS_PER_PARTITION)))


def _key(lot_id: str, run_id: str, entity: str) -> dict:
    return {"lot_id": lot_id, "run_id": run_id, "entity": entity}


def _clear(conn: sa.Connection, key: dict) -> None:
    for table in ("stg.dedupe_plan", "stg.dedupe_input", "stg.dedupe_score", "stg.dedupe_pair"):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE lot_id = :lot_id AND run_id = :run_id"
                             " AND entity = :entity"), key)


def prepare(url: str, lot: LotConfig, entity: str, run_id: str) -> list[dict]:
    """Plan the entity's dedupe; returns one {"part": p, "of": n} per partition (at least one: a mapped
    task over nothing would skip the dedupe after it).

    Long because the plan (count, learn, cut, split) is written in one transaction with one timing; the
    steps with logic of their own live in linkage."""
    from crm_migration.matching import dedupe, linkage
    from crm_migration.rules.cleanse import CLEAN_COLUMNS

    validate_key(lot.lot_id, run_id)
    rules = lot.entities[entity].dedupe
    key = _key(lot.lot_id, run_id, entity)
    with timed(url, lot.lot_id, run_id, entity, "dedupe_prepare") as st:
        with engine(url).connect() as conn:
            n = conn.execute(sa.text(f"SELECT count(*) FROM stg.{entity}_cleanse WHERE lot_id = :l AND run_id = :r"),
                             {"l": lot.lot_id, "r": run_id}).scalar_one()
        st["rows_in"] = n
        if not dedupe.learns(entity, n, rules):
            with engine(url).begin() as conn:
                _clear(conn, key)
            log.info("dedupe of %s: %d rows, method %s: no weights to learn, nothing to partition (the dedupe task"
                     " does it all)", entity, n, rules.method)
            return [{"part": 0, "of": 1}]
        # only the fields the dedupe reads, a batch at a time: a million rows as whole dicts would be
        # most of the task's memory
        cols = sorted(dedupe.input_fields(entity, rules) & set(CLEAN_COLUMNS[entity]))
        params = {"l": lot.lot_id, "r": run_id}
        with engine(url).connect() as conn:
            has = conn.execute(sa.text(
                "SELECT " + ", ".join(f"bool_or({c} IS NOT NULL AND {c}::text <> '')" for c in cols)
                + f" FROM stg.{entity}_cleanse WHERE lot_id = :l AND run_id = :r"), params).one()
        present = {c for c, h in zip(cols, has, strict=True) if h}
        fields, key_fields, inputs = dedupe.batch_inputs(entity, rules, present)
        con, spill = linkage.duckdb_session()
        try:
            # a batch of rows at a time into DuckDB, never all held in Python; what follows (windows, the model,
            # partitions, term frequencies, the plan's rows) is SQL there, the plan's rows back to PostgreSQL
            # as CSV: no Python object per row
            t, digest, done = time.perf_counter(), hashlib.md5(), 0
            with dedupe.gc_paused():
                for batch in batches(url, f"SELECT legacy_id, {', '.join(cols)} FROM stg.{entity}_cleanse"
                                     " WHERE lot_id = :l AND run_id = :r ORDER BY legacy_id", params,
                                     progress=f"dedupe {entity}, reading its rows"):
                    ids = [r["legacy_id"] for r in batch]
                    digest.update((("\n" if done else "") + "\n".join(ids)).encode())
                    values, keys = inputs(batch)
                    linkage.add_rows(con, values, keys, len(fields), len(key_fields), done, ids)
                    done += len(batch)
            if done != n:
                raise StalePlan(f"the clean slice of {entity} changed while dedupe_prepare_{entity} read it: rerun it")
            fcols = [f"f{k}" for k in range(len(fields))]
            key_fields = linkage.window_blocks(con, key_fields, [f.field for f in fields], dedupe.MATCH_WINDOW)
            n_keys = len(key_fields)
            live = linkage.live_keys(con, "crm_rows", [f"b{k}" for k in range(n_keys)])
            log.info("dedupe of %s: %d rows' compared values and keys read and passed to DuckDB in %.1f s (task"
                     " peak so far %d MB)", entity, n, time.perf_counter() - t, peak_mb())
            t = time.perf_counter()
            model = linkage.learn_table(con, fcols, live, [f.field for f in fields], dedupe.compare_codes(fields),
                                        key_fields)
            log.info("dedupe of %s: match weights learned from %d rows in %.1f s (task peak so far %d MB)", entity,
                     n, time.perf_counter() - t, peak_mb())
            parts_n = partitions_for(n, rules.partitions, n_keys or 1)
            tf_cols = linkage.plan_columns(con, model, parts_n) if model else []
            cut = linkage.lowest_cut(rules.review_probability, linkage.blocked_upper(con), n) if model else 0.0
            plan_csv = f"{spill}/plan.csv"
            if model:
                linkage.plan_csv(con, len(fcols), n_keys, tf_cols, key, plan_csv)
            with engine(url).begin() as conn:
                _clear(conn, key)
                conn.execute(sa.text(
                    "INSERT INTO stg.dedupe_plan (lot_id, run_id, entity, partitions, n_rows, ids_digest, cut, model,"
                    " tf_columns) VALUES (:lot_id, :run_id, :entity, :p, :n, :d, :cut, CAST(:m AS jsonb), :tf)"),
                    {**key, "p": parts_n, "n": n, "d": digest.hexdigest(), "cut": cut,
                     "m": json.dumps(model) if model else None, "tf": tf_cols})
                if model:
                    copy_csv_file(conn, "stg.dedupe_input", ("lot_id", "run_id", "entity", "uid", "legacy_id",
                                                             "vals", "keys", "parts", "tfs"), plan_csv)
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)
        st["rows_out"] = n
    log.info("dedupe of %s: %d rows in %d partition(s) (dedupe_score_%s, one mapped task each)", entity, n, parts_n,
             entity)
    return [{"part": p, "of": parts_n} for p in range(parts_n)]


def _plan(conn: sa.Connection, key: dict) -> tuple | None:
    return conn.execute(sa.text(
        "SELECT partitions, n_rows, ids_digest, cut, model, tf_columns FROM stg.dedupe_plan"
        " WHERE lot_id = :lot_id AND run_id = :run_id AND entity = :entity"), key).first()


def _scored(url: str, key: dict, plan: tuple, part: int, con, spill: str) -> tuple[int, list]:  # noqa: ANN001
    """Partition part's rows from stg.dedupe_input into DuckDB table crm_part (through a CSV file in spill)
    and its pairs scored into crm_scored (linkage.score_table); returns (rows, histogram)."""
    from crm_migration.matching import linkage

    with engine(url).connect() as conn:
        n_keys = conn.execute(sa.text(
            "SELECT coalesce(max(array_length(keys, 1)), 0) FROM (SELECT keys FROM stg.dedupe_input"
            " WHERE lot_id = :lot_id AND run_id = :run_id AND entity = :entity LIMIT 1) k"), key).scalar_one()
    n_fields = len(plan.model["fields"])
    cols, bcols = [f"f{k}" for k in range(n_fields)], [f"b{k}" for k in range(n_keys)]
    sql = ["uid"] + [f"NULLIF(vals[{k + 1}], '')" for k in range(n_fields)] + [f"keys[{k + 1}]" for k in range(n_keys)]
    sql += [f"parts[{k + 1}]" for k in range(n_keys)] + [f"tfs[{k + 1}]" for k in range(len(plan.tf_columns))]
    columns = [(c, s, t) for (c, t), s in zip(linkage.partition_columns(n_fields, n_keys, plan.tf_columns), sql,
                                                strict=True)]
    rows_csv = f"{spill}/rows.csv"
    with engine(url).connect() as conn, open(rows_csv, "wb") as out:
        cur = conn.connection.driver_connection.cursor()
        with cur.copy(f"COPY (SELECT {', '.join(f'{sql} AS {c}' for c, sql, _ in columns)} FROM stg.dedupe_input"
                      " WHERE lot_id = %s AND run_id = %s AND entity = %s AND %s = ANY(parts) ORDER BY uid)"
                      " TO STDOUT WITH (FORMAT csv, HEADER true)",
                      (key["lot_id"], key["run_id"], key["entity"], part)) as cp:
            for data in cp:
                out.write(data)
    types = ", ".join(f"'{c}': '{t}'" for c, _, t in columns)
    con.execute(f"CREATE TABLE crm_part AS SELECT * FROM read_csv('{rows_csv}', header = true, auto_detect ="
                f" false, delim = ',', quote = '\"', escape = '\"', columns = {{{types}}})")
    rows_in = con.execute("SELECT count(*) FROM crm_part").fetchone()[0]
    live = linkage.live_keys(con, "crm_part", bcols)
    return rows_in, linkage.score_table(con, cols, live, plan.tf_columns, part, plan.model) if rows_in else []


def score(url: str, lot: LotConfig, entity: str, run_id: str, part: int) -> dict:
    """Score one partition's pairs; rewrites its slice of stg.dedupe_score and stg.dedupe_pair. The rows go
    from PostgreSQL to DuckDB and the kept pairs back as CSV through COPY, never as Python objects: moving
    them row by row through Python took three quarters of a partition's time. The pairs kept are those
    above linkage.partition_cut (recorded with the histogram), not every pair above the plan's lowest cut."""
    from crm_migration.matching import linkage

    validate_key(lot.lot_id, run_id)
    key = _key(lot.lot_id, run_id, entity)
    t0 = time.perf_counter()
    with engine(url).connect() as conn:
        plan = _plan(conn, key)
    if plan is None or plan.model is None:
        log.info("dedupe of %s: nothing to score in partitions (no weights learned): the dedupe task does it",
                 entity)
        return {"entity": entity, "part": part, "compared": 0}
    if not 0 <= part < plan.partitions:
        raise ValueError(f"partition {part} of {plan.partitions}: clear dedupe_prepare_{entity} and what follows")
    n_fields = len(plan.model["fields"])
    con, spill = linkage.duckdb_session()
    try:
        pairs_csv = f"{spill}/pairs.csv"
        rows_in, hist = _scored(url, key, plan, part, con, spill)
        read_scored = time.perf_counter() - t0
        cut = linkage.partition_cut(hist, plan.cut, lot.entities[entity].dedupe.review_probability,
                                     plan.n_rows, plan.partitions)
        kept = 0
        if hist:
            weights = ", ".join(f"w{k}" for k in range(n_fields))
            kept = con.execute(f"COPY (SELECT {int(part)}, uid_l, uid_r, total, '{{' || array_to_string([{weights}],"
                               f" ',') || '}}' FROM crm_scored WHERE total >= {float(cut)!r}"
                               f" ORDER BY uid_l, uid_r) TO '{pairs_csv}' (FORMAT csv, HEADER false)").fetchone()[0]
        compared = sum(c for _, c in hist)
        seconds = round(time.perf_counter() - t0, 3)
        with engine(url).begin() as conn:
            pkey = {**key, "part": part}
            replace_slice(conn, "stg.dedupe_score", pkey, ("rows_in", "compared", "hist", "seconds", "cut"),
                          [(rows_in, compared, json.dumps(hist), seconds, cut)])
            conn.execute(sa.text("DELETE FROM stg.dedupe_pair WHERE lot_id = :lot_id AND run_id = :run_id"
                                 " AND entity = :entity AND part = :part"), pkey)
            if kept:
                conn.exec_driver_sql("CREATE TEMP TABLE crm_pairs (part integer, uid_l bigint, uid_r bigint,"
                                     " total double precision, weights double precision[]) ON COMMIT DROP")
                copy_csv_file(conn, "crm_pairs", ("part", "uid_l", "uid_r", "total", "weights"), pairs_csv)
                conn.execute(sa.text("INSERT INTO stg.dedupe_pair (lot_id, run_id, entity, part, uid_l, uid_r, total,"
                                     " weights) SELECT :lot_id, :run_id, :entity, part, uid_l, uid_r, total, weights"
                                     " FROM crm_pairs"), key)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    log.info("dedupe of %s, partition %d of %d: %d rows, %d pairs scored (read and scored in %.1f s), %d kept"
             " (total weight >= %.2f; the plan's lowest cut %.2f) in %.1f s", entity, part, plan.partitions, rows_in,
             compared, read_scored, kept, cut, plan.cut, seconds)
    return {"entity": entity, "part": part, "rows": rows_in, "compared": compared, "kept": kept}


def _rescored(url: str, key: dict, plan: tuple, part: int, cut: float) -> list[tuple]:
    """Partition part's pairs at or above cut, scored again (its task kept only those above a higher cut)."""
    from crm_migration.matching import linkage

    con, spill = linkage.duckdb_session()
    try:
        _, hist = _scored(url, key, plan, part, con, spill)
        return linkage.scored_pairs(con, len(plan.model["fields"]), cut) if hist else []
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def collect(url: str, lot: LotConfig, entity: str, run_id: str, ids: list[str]) -> tuple | None:
    """For the dedupe task: (scored pairs, pairs compared, model with its prior) over every partition, the
    pairs' uids being positions in ids (the clean slice's legacy ids, sorted); None when prepare planned no
    partitions (the dedupe task then does it all). Raises StalePlan when the rows are no longer those
    prepared, or a partition was not scored."""
    from crm_migration.matching import dedupe, linkage

    key = _key(lot.lot_id, run_id, entity)
    with engine(url).connect() as conn:
        plan = _plan(conn, key)
        if plan is None:
            if dedupe.learns(entity, len(ids), lot.entities[entity].dedupe):
                log.info("dedupe of %s: no plan from dedupe_prepare_%s for this run: scored here", entity, entity)
            return None
        if plan.n_rows != len(ids) or plan.ids_digest != _digest(ids):
            raise StalePlan(f"the clean slice of {entity} changed since dedupe_prepare_{entity} ran: clear"
                            f" dedupe_prepare_{entity} with its downstream tasks")
        scores = conn.execute(sa.text(
            "SELECT part, compared, hist, seconds, coalesce(cut, :lowest) AS cut FROM stg.dedupe_score"
            " WHERE lot_id = :lot_id AND run_id = :run_id AND entity = :entity ORDER BY part"),
            {**key, "lowest": plan.cut}).all()
        missing = sorted(set(range(plan.partitions)) - {s.part for s in scores})
        if missing:
            raise StalePlan(f"partitions {missing} of {entity} were not scored: clear dedupe_score_{entity}")
        if plan.model is None:
            return [], 0, {}
        floor = lot.entities[entity].dedupe.review_probability
        _, _, cut = linkage.prior_and_cut([[tuple(h) for h in s.hist] for s in scores], plan.n_rows, floor)
        # only the pairs finish() keeps (the prior is known from the histograms): a partition kept those above
        # its own cut (linkage.partition_cut), a few times what finish() keeps
        by_part: dict[int, list] = {s.part: [] for s in scores}
        kept = 0
        res = conn.execute(sa.text(
            "SELECT part, uid_l, uid_r, total, weights FROM stg.dedupe_pair WHERE lot_id = :lot_id"
            " AND run_id = :run_id AND entity = :entity AND total >= :cut").execution_options(
                stream_results=True, yield_per=50_000), {**key, "cut": cut - 1e-9})
        for p in res:
            by_part[p.part].append((p.uid_l, p.uid_r, p.total, tuple(p.weights)))
            kept += 1
    for s in scores:
        if s.compared and s.cut > cut:  # it kept too few: the prior over all is above the one it allowed for
            log.warning("dedupe of %s, partition %d kept the pairs with a total weight >= %.2f, the learned cut is"
                        " %.2f: scored again here", entity, s.part, s.cut, cut)
            kept -= len(by_part[s.part])
            by_part[s.part] = _rescored(url, key, plan, s.part, cut - 1e-9)
            kept += len(by_part[s.part])
    scored = [{"hist": [tuple(h) for h in s.hist], "pairs": sorted(by_part[s.part]), "compared": s.compared}
              for s in scores]
    record_timing(url, lot.lot_id, run_id, entity, "dedupe_score", sum(s.compared for s in scores), kept,
                  round(sum(s.seconds for s in scores), 3))  # the partitions' time, added up
    return linkage.finish(scored, plan.model, plan.n_rows, lot.entities[entity].dedupe.review_probability)


def _digest(ids: list[str]) -> str:
    return hashlib.md5("\n".join(ids).encode()).hexdigest()
