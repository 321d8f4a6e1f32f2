"""Probabilistic matching: Fellegi-Sunter match weights learned from the lot's own rows, no labels.

The estimation is Splink's (the field's standard, MIT) on an in-process DuckDB: u probabilities from
random pairs, m probabilities by expectation maximisation over the blocked pairs, term-frequency
adjustment (a match on a rare surname weighs more than one on a common one), a field empty on either
side counting as no evidence. We give it what we know of the data: the values already transformed
(folded names, company keys, digits), one comparison per configured field with levels chosen by its
comparison kind, and the blocking keys computed in Python (a key with an empty part is skipped for
that row only). It returns, per candidate pair, the match probability and each field's evidence
(its match weight, log2 of the Bayes factor), which the dedupe explains merges with.

Why Splink, not our own EM: the estimation, the term-frequency maths and the SQL that scales to
millions of pairs are what it does well; DuckDB runs it in the task's process (no server), and its
Spark backend is there for a team past one machine. Imported only when a lot uses it.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np

from crm_migration.matching.estimation import (BINS_PER_BIT, complete, model_weights, prior_share, smoothed,
                                               training_rules, weight_terms, with_m, without_tf)

log = logging.getLogger(__name__)
# EM needs enough pairs to tell matches from non-matches: below this many rows the weighted score
# (config thresholds) applies instead, and the log says so.
MIN_ROWS_TO_LEARN = 200
JW_LEVELS = (0.95, 0.88, 0.7)
THREADS = 2                # DuckDB's threads: the task's share of the worker
MEMORY_LIMIT = "1280MB"    # DuckDB spills beyond this: a dedupe task's peak is about this plus its imports
TABLE_CHUNK = 250_000      # rows passed to DuckDB at a time
# EM's iterations on the counts of each agreement pattern (a few hundred rows) instead of every sampled pair
# with its term-frequency adjustments (Splink's option; m change slightly, scoring keeps the adjustments)
EM_WITHOUT_TF = True
EDIT_LEVELS = (1, 2)
SHARE_MARGIN = 2.0         # a partition keeps the pairs a prior up to twice the one its own pairs give could keep


@dataclass(frozen=True)
class ScoredPair:
    i: int
    j: int
    probability: float
    evidence: tuple[tuple[str, float], ...]  # (field, match weight) per compared field, empty ones left out

    def explain(self) -> str:
        """'email +9.1, last_name +4.2, first_name -2.0': what agreed, what disagreed, how much."""
        return ", ".join(f"{f} {w:+.1f}" for f, w in sorted(self.evidence, key=lambda e: -abs(e[1]))) or "no evidence"


def _words(side: str) -> str:
    return f"str_split({side}, ' ')"


def _one_edit(a: str, b: str) -> str:
    """SQL: a and b one edit apart (Damerau-Levenshtein), the costly distance computed only for values whose
    Jaro-Winkler similarity is high enough to be one edit apart (20x faster over random pairs)."""
    return f"CASE WHEN jaro_winkler_similarity({a}, {b}) >= 0.9 THEN damerau_levenshtein({a}, {b}) <= 1 ELSE false END"


def _person_comparison(column: str, compare: str, other: str):  # noqa: ANN202
    """The levels of a person's name part (other: the column it may be swapped with), e-mails or a date."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    left, right = f"{column}_l", f"{column}_r"
    jw = f"jaro_winkler_similarity({left}, {right})"
    if compare == "name":
        levels = [cll.NullLevel(column), cll.ExactMatchLevel(column).configure(tf_adjustment_column=column)]
        if other:  # one piece of evidence: weighed on the first of the two fields, no evidence on the other
            o_l, o_r = f"f{other}_l", f"f{other}_r"
            swapped = cll.CustomLevel(f"jaro_winkler_similarity({left}, {o_r}) >= 0.92 AND"
                                      f" jaro_winkler_similarity({o_l}, {right}) >= 0.92", "first and last swapped")
            levels.append(swapped if int(other) > int(column[1:]) else swapped.configure(is_null_level=True))
        return cl.CustomComparison(output_column_name=column, comparison_levels=[
            *levels, cll.CustomLevel(f"{jw} >= 0.92", "Jaro-Winkler >= 0.92"),
            cll.CustomLevel(f"{jw} >= 0.8", "Jaro-Winkler >= 0.8"),
            cll.CustomLevel(f"(length({left}) = 1 OR length({right}) = 1) AND left({left}, 1) = left({right}, 1)",
                            "an initial and its name"),
            cll.ElseLevel()])
    if compare == "email":  # every address of the row, space-separated (values_of), or one
        # no level for the same local part at another domain: namesakes share john.smith at two providers; nor
        # for a typo in a number (john.smith58 / john.smith59: two people as often as one)
        a, b = (f"split_part({side}, ' ', 1)" for side in (left, right))
        same_digits = f"regexp_replace({a}, '[^0-9]', '', 'g') = regexp_replace({b}, '[^0-9]', '', 'g')"
        return cl.CustomComparison(output_column_name=column, comparison_levels=[
            cll.NullLevel(column), cll.ExactMatchLevel(column).configure(tf_adjustment_column=column),
            cll.CustomLevel(f"list_has_any({_words(left)}, {_words(right)})", "an address in common"),
            cll.CustomLevel(f"{_one_edit(a, b)} AND {same_digits}", "one typo apart (not in a number)"),
            cll.ElseLevel()])
    if compare == "date":  # ISO dates (YYYY-MM-DD)
        swapped = (f"substr({left}, 1, 4) = substr({right}, 1, 4) AND substr({left}, 6, 2) = substr({right}, 9, 2)"
                   f" AND substr({left}, 9, 2) = substr({right}, 6, 2)")
        return cl.CustomComparison(output_column_name=column, comparison_levels=[
            cll.NullLevel(column), cll.ExactMatchLevel(column).configure(tf_adjustment_column=column),
            cll.CustomLevel(swapped, "day and month swapped"),
            cll.CustomLevel(_one_edit(left, right), "one digit mistyped"),
            cll.CustomLevel(f"substr({left}, 1, 4) = substr({right}, 1, 4)", "same year"), cll.ElseLevel()])
    raise ValueError(f"not a person comparison: {compare}")


def _comparison(column: str, code: str):
    """Splink comparison levels for one field, by its comparison kind (the SQL runs in DuckDB); code is the
    kind, with '~k' for a name compared crosswise with column fk (dedupe.compare_codes)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    compare, _, other = code.partition("~")
    left, right = f"{column}_l", f"{column}_r"
    jw = f"jaro_winkler_similarity({left}, {right})"
    contained = f"(list_has_all({_words(left)}, {_words(right)}) OR list_has_all({_words(right)}, {_words(left)}))"
    if compare in ("name", "email", "date"):
        return _person_comparison(column, compare, other)
    if compare == "exact":
        c = cl.ExactMatch(column)
    elif compare == "any":  # space-separated values (config/entities: values_of): one shared is agreement
        return cl.CustomComparison(output_column_name=column, comparison_levels=[
            cll.NullLevel(column), cll.ExactMatchLevel(column),
            cll.CustomLevel(f"list_has_any({_words(left)}, {_words(right)})", "a value in common"), cll.ElseLevel()])
    elif compare == "jaro_winkler":
        c = cl.JaroWinklerAtThresholds(column, list(JW_LEVELS))
    elif compare == "tokens":
        c = cl.CustomComparison(output_column_name=column, comparison_levels=[
            cll.NullLevel(column), cll.ExactMatchLevel(column).configure(tf_adjustment_column=column),
            cll.CustomLevel(f"{jw} >= 0.92", "Jaro-Winkler >= 0.92"),
            cll.CustomLevel(contained, "one name's words all in the other"),
            cll.CustomLevel(f"{jw} >= 0.8", "Jaro-Winkler >= 0.8"), cll.ElseLevel()])
        return c
    elif compare == "address":
        num_l, num_r = (f"regexp_extract({side}, '^\\s*([0-9]+)', 1)" for side in (left, right))
        rest_l, rest_r = (f"trim(regexp_replace({side}, '^\\s*[0-9]+', ''))" for side in (left, right))
        same_number = f"({num_l} <> '' AND {num_l} = {num_r})"
        rest_alike = (f"(jaro_winkler_similarity({rest_l}, {rest_r}) >= 0.85 OR list_has_all({_words(rest_l)},"
                      f" {_words(rest_r)}) OR list_has_all({_words(rest_r)}, {_words(rest_l)}))")
        c = cl.CustomComparison(output_column_name=column, comparison_levels=[
            cll.NullLevel(column), cll.ExactMatchLevel(column),
            cll.CustomLevel(f"{same_number} AND {rest_alike}", "same number, same street"),
            cll.CustomLevel(same_number, "same number"),
            cll.CustomLevel(f"{num_l} = '' AND {num_r} = '' AND {jw} >= 0.88", "no numbers, Jaro-Winkler >= 0.88"),
            cll.ElseLevel()])
        return c
    else:
        c = cl.DamerauLevenshteinAtThresholds(column, list(EDIT_LEVELS))
    return c.configure(term_frequency_adjustments=True)


def rows_table(con, values: list[tuple], keys: list[tuple], n_fields: int,  # noqa: ANN001
               name: str = "crm_rows") -> tuple[list[str], list[str]]:
    """The rows as a DuckDB table Splink and our SQL read: uid, f0.. (compared values, NULL when empty),
    b0.. (blocking keys). Returns the compared columns' names and the key columns some row has."""
    cols = [f"f{k}" for k in range(n_fields)]
    bcols = [f"b{k}" for k in range(len(keys[0]) if keys else 0)]
    add_rows(con, values, keys, n_fields, len(bcols), 0, name=name)
    return cols, live_keys(con, name, bcols)


def add_rows(con, values: list[tuple], keys: list[tuple], n_fields: int, n_keys: int, start: int,  # noqa: ANN001
             ids: Sequence[str] | None = None, name: str = "crm_rows") -> None:
    """Rows start, start + 1, .. of rows_table's table (created when start is 0), and their legacy ids in
    crm_ids (uid, legacy_id: apart, as Splink reads every column of crm_rows) when ids are given: a lot's
    rows can be added batch by batch, never all held in Python."""
    columns = [("uid", "BIGINT", range(start, start + len(values)))]
    columns += [(f"f{k}", "VARCHAR", [v[k] or None for v in values]) for k in range(n_fields)]
    columns += [(f"b{k}", "VARCHAR", [key[k] for key in keys]) for k in range(n_keys)]
    _insert(con, name, columns, create=start == 0)
    if ids is not None:
        _insert(con, "crm_ids", [("uid", "BIGINT", columns[0][2]), ("legacy_id", "VARCHAR", ids)], create=start == 0)


_ARROW_TYPES = {"BIGINT": "int64", "INTEGER": "int32", "VARCHAR": "string", "DOUBLE": "float64"}


def _insert(con, name: str, columns: list[tuple[str, str, Sequence]], create: bool = True) -> None:  # noqa: ANN001
    """Rows into table name (created first if create) from (column, type, one value per row) columns,
    passed to DuckDB as Arrow arrays (pyarrow builds a column of a million strings in C; DuckDB's own
    conversion of a Python list parameter was a tenth of dedupe_prepare's time)."""
    import pyarrow as pa

    if create:
        con.execute(f"CREATE OR REPLACE TABLE {name} ({', '.join(f'{c} {t}' for c, t, _ in columns)})").fetchall()
    n_rows = len(columns[0][2]) if columns else 0
    # in chunks: the Arrow copy of a column beside its Python list costs memory for a moment
    for start in range(0, n_rows, TABLE_CHUNK):
        chunk = pa.table({c: pa.array(d[start:start + TABLE_CHUNK], type=getattr(pa, _ARROW_TYPES[t])())
                          for c, t, d in columns})
        con.register("crm_arrow_chunk", chunk)
        con.execute(f"INSERT INTO {name} SELECT * FROM crm_arrow_chunk").fetchall()
        con.unregister("crm_arrow_chunk")


def live_keys(con, name: str, keys: list[str]) -> list[str]:  # noqa: ANN001
    """The key columns of DuckDB table name that some row has a value in."""
    counts = con.execute(f"SELECT {', '.join(f'count({b})' for b in keys)} FROM {name}").fetchall()[0] if keys else ()
    return [b for b, k in zip(keys, counts, strict=True) if k]


def duckdb_session():  # noqa: ANN202
    """An in-process DuckDB with the task's share of threads and memory; past the limit it spills to a temp
    directory of its own (not the task's working directory). Returns (connection, spill directory)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    spill = tempfile.mkdtemp(prefix="crm-duckdb-")
    con.execute(f"SET temp_directory = '{spill}'")
    return con, spill


def score_pairs(values: list[tuple], names: Sequence[str], compares: Sequence[str], keys: list[tuple],
                floor: float, key_fields: Sequence[set[str]] | None = None,
                model: dict | None = None, partitions: int = 1) -> tuple[list[ScoredPair], int, dict]:
    """values[i]: the row's transformed field values ('' = empty); keys[i]: its blocking key values (None =
    skipped for this row); key_fields[k]: the fields key k is made of. model: a model learned before (the
    lot's, for the delta's few rows): used as it is, nothing learned. Otherwise learned here (learn_table),
    the blocked pairs scored partition by partition (score_table on each partition's rows: what the lot DAG's
    mapped tasks do, here one after the other) and the prior and the cut set over all of them (finish).
    Returns the pairs at or above probability floor, the number of pairs compared, and the model
    ({"splink": Splink's model JSON, "prior": ..., "fields", "compares", "weights": match weight per field
    level for the report})."""
    if model is not None:  # a few rows (a delta's): their own term frequencies mean nothing, the lot's u does
        con, spill = duckdb_session()
        try:
            cols, live = rows_table(con, values, keys, len(names))
            if not live:
                return [], 0, {}
            return _predict_stored(con, "crm_rows", live, complete(without_tf(model["splink"])), model["prior"],
                                   names, cols, floor, model)
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)
    con, spill = duckdb_session()
    try:
        cols, live = rows_table(con, values, keys, len(names))
        learned = learn_table(con, cols, live, names, compares, key_fields)
        if learned is None:
            return [], 0, {}
        tf_cols = plan_columns(con, learned, partitions)
        low = lowest_cut(floor, blocked_upper(con), len(values))
        scored = []
        n_keys = len(keys[0]) if keys else 0
        columns = ", ".join(c for c, _ in partition_columns(len(cols), n_keys, tf_cols))
        for p in range(partitions):  # as the lot DAG's mapped dedupe_score tasks do, one after the other
            con.execute(f"CREATE OR REPLACE TABLE crm_part AS SELECT {columns} FROM crm_plan WHERE"
                        f" list_contains([{', '.join(f'q{k}' for k in range(n_keys))}], {p}) ORDER BY uid").fetchall()
            hist = score_table(con, cols, live, tf_cols, p, learned)
            scored.append({"hist": hist, "pairs": scored_pairs(con, len(cols), low) if hist else [],
                           "compared": sum(c for _, c in hist)})
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return finish(scored, learned, len(values), floor)


def learn_table(con, cols: list[str], live: list[str], names: Sequence[str], compares: Sequence[str],  # noqa: ANN001
                key_fields: Sequence[set[str]] | None = None) -> dict | None:
    """The match model learned from DuckDB table crm_rows (rows_table: cols compared, live keys) with Splink:
    u from random pairs, m by EM under the training rules, every level's m and u written out; its prior
    comes later (finish: it needs every blocked pair's weight). None: no blocking key or no rule to learn
    from."""
    if not live:
        return None
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)  # "level not observed": expected under a training rule
    settings = SettingsCreator(
        link_type="dedupe_only", unique_id_column_name="uid",
        comparisons=[_comparison(c, cmp) for c, cmp in zip(cols, compares, strict=True)],
        blocking_rules_to_generate_predictions=[block_on(b) for b in live],
        retain_intermediate_calculation_columns=True, retain_matching_columns=False, max_iterations=25)
    db = DuckDBAPI(connection=con)
    table = db.register("crm_rows")
    n = con.execute("SELECT count(*) FROM crm_rows").fetchall()[0][0]
    linker = Linker(table, settings, log_level=None)
    t = time.perf_counter()
    linker.training.estimate_u_using_random_sampling(max_pairs=min(5e6, n * (n - 1) / 2), seed=1)
    log.info("u of %d fields from %d random pairs: %.1f s", len(cols), min(5e6, n * (n - 1) / 2),
             time.perf_counter() - t)
    base = linker.misc.save_model_to_json()
    name_of = dict(zip(names, cols, strict=True))
    in_key = {b: {name_of[f] for f in (key_fields[int(b[1:])] if key_fields else ()) if f in name_of} for b in live}
    identifiers = [c for c, cmp in zip(cols, compares, strict=True) if cmp in ("exact", "any", "email", "date")]
    learned: dict[str, list[list[float]]] = {}
    for rule, estimates in training_rules(base, live, cols, identifiers, in_key, con, n):
        t = time.perf_counter()
        session = Linker(table, base, log_level=None)
        try:
            session.training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=EM_WITHOUT_TF)
        except Exception as exc:  # noqa: BLE001 - a rule EM cannot fit: the others still do
            log.info("EM on %s skipped: %s", rule, str(exc).splitlines()[0])
            continue
        for comp in session.misc.save_model_to_json()["comparisons"]:
            c = comp["output_column_name"]
            if c in estimates:
                m = [lv.get("m_probability") or 0.0 for lv in comp["comparison_levels"]
                     if not lv.get("is_null_level")]
                if sum(m) > 0:
                    learned.setdefault(c, []).append(smoothed(m))
        log.info("EM on %s (learns %s): %.1f s", rule, sorted(estimates), time.perf_counter() - t)
    if not learned:
        return None
    return {"splink": complete(with_m(base, learned)), "fields": list(names), "compares": list(compares)}


def _tf_columns(splink_model: dict) -> list[str]:
    """The compared columns with a term-frequency adjustment on some level."""
    return sorted({lvl["tf_adjustment_column"] for comp in splink_model.get("comparisons", [])
                   for lvl in comp["comparison_levels"] if lvl.get("tf_adjustment_column")})


def plan_columns(con, model: dict, partitions: int) -> list[str]:  # noqa: ANN001
    """DuckDB view crm_plan: the rows of crm_rows with each key value's partition (q0.., by key column:
    DuckDB's hash of the value modulo the partitions, set once in the plan and kept with the row) and each
    adjusted column's term frequency over the whole lot (tf_f.., Splink's tf_ column: the share of the rows
    with a value that have this one), so a partition scores a common surname as common although it holds
    only some of its rows. Returns the adjusted columns (f..), in order."""
    tf_cols = _tf_columns(model["splink"])
    bcols = _columns(con, "crm_rows", "b")
    # (DuckDB hashes NULL too: an empty key must have no partition, or one partition reads every row without it)
    columns = [f"CASE WHEN r.{b} IS NOT NULL THEN CAST(hash(r.{b}) % {int(partitions)} AS INTEGER) END AS q{b[1:]}"
               for b in bcols]
    joins = []
    for c in tf_cols:
        con.execute(f"CREATE OR REPLACE TEMP TABLE crm_tf_{c} AS SELECT {c} AS v, CAST(count(*) AS DOUBLE)"
                    f" / (SELECT count({c}) FROM crm_rows) AS tf FROM crm_rows WHERE {c} IS NOT NULL GROUP BY {c}"
                    ).fetchall()
        columns.append(f"t_{c}.tf AS tf_{c}")
        joins.append(f"LEFT JOIN crm_tf_{c} t_{c} ON t_{c}.v = r.{c}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW crm_plan AS SELECT r.*, {', '.join(columns)} FROM crm_rows r"
                f" {' '.join(joins)}").fetchall()
    return tf_cols


def window_blocks(con, key_fields: list[set[str]], names: Sequence[str], size: int) -> list[set[str]]:  # noqa: ANN001
    """Blocks of DuckDB table crm_rows (rows_table) larger than size rows, in windows (dedupe.bounded_blocks
    says why and how): for each key column b.. with such a block, its rows there get the key of their window
    of the block sorted on the compared values, the key's own fields first (f.. in the order of names), and a
    new key column (appended) that of their window of the block sorted on the same values spelled backwards.
    Sorting is DuckDB's (bytes of UTF-8: the characters' order; a tie by uid), of the big blocks' rows only.
    Returns the fields of every key column, the new ones appended."""
    cols = _columns(con, "crm_rows")
    fcols, bcols = _columns(con, "crm_rows", "f"), _columns(con, "crm_rows", "b")
    select = {c: f"r.{c}" for c in cols}
    joins, extra, extra_fields = [], [], []
    for k, b in enumerate(bcols):
        big_blocks = f"SELECT {b} FROM crm_rows WHERE {b} IS NOT NULL GROUP BY {b} HAVING count(*) > {int(size)}"
        big, rows = con.execute(f"SELECT count(*), coalesce(sum(c), 0) FROM (SELECT count(*) AS c FROM crm_rows"
                                f" WHERE {b} IS NOT NULL GROUP BY {b} HAVING count(*) > {int(size)})").fetchall()[0]
        if not big:
            continue
        order = [n for n, f in enumerate(names) if f in key_fields[k]]
        order += [n for n, f in enumerate(names) if f not in key_fields[k]]

        def window(sort: str, mark: str, b: str = b) -> str:
            rank = f"row_number() OVER (PARTITION BY {b} ORDER BY {sort}, uid) - 1"
            return f"{b} || chr(30) || '{mark}' || CAST(({rank}) // {int(size)} AS VARCHAR)"

        forwards = window(", ".join(f"coalesce({fcols[n]}, '')" for n in order), "a")
        backwards = window(", ".join(f"reverse(coalesce({fcols[n]}, ''))" for n in order), "b")
        con.execute(f"CREATE OR REPLACE TEMP TABLE crm_window{k} AS SELECT uid, {forwards} AS a, {backwards} AS z"
                    f" FROM crm_rows WHERE {b} IN ({big_blocks})").fetchall()
        joins.append(f"LEFT JOIN crm_window{k} w{k} ON w{k}.uid = r.uid")
        select[b] = f"coalesce(w{k}.a, r.{b}) AS {b}"
        extra.append(f"w{k}.z AS b{len(bcols) + len(extra)}")
        extra_fields.append(key_fields[k])
        log.info("blocking key %d: %d blocks larger than %d rows (%d rows) compared in sorted windows", k, big, size,
                 rows)
    if extra:
        con.execute(f"CREATE OR REPLACE TABLE crm_rows AS SELECT {', '.join([*select.values(), *extra])}"
                    f" FROM crm_rows r {' '.join(joins)} ORDER BY r.uid").fetchall()
        for k in range(len(bcols)):
            con.execute(f"DROP TABLE IF EXISTS crm_window{k}").fetchall()
    return [*key_fields, *extra_fields]


def _pg_array(items: Sequence[str], text: bool) -> str:
    """DuckDB SQL of a PostgreSQL array literal of the SQL expressions items (NULL elements as NULL; text:
    elements quoted, backslashes and double quotes escaped as the array literal wants)."""
    if text:
        items = [f"""'"' || replace(replace({e}, '\\', '\\\\'), '"', '\\"') || '"'""" for e in items]
    else:
        items = [f"CAST({e} AS VARCHAR)" for e in items]
    return "'{' || concat_ws(',', " + ", ".join(f"coalesce({e}, 'NULL')" for e in items) + ") || '}'" if items \
        else "'{}'"


def plan_csv(con, n_fields: int, n_keys: int, tf_cols: Sequence[str], key: dict, path: str) -> None:  # noqa: ANN001
    """The plan's rows (crm_plan of plan_columns, with crm_ids) written to path as CSV in the columns of
    stg.dedupe_input: lot_id, run_id, entity, uid, legacy_id, vals, keys, parts, tfs (PostgreSQL arrays;
    an empty value is '', an empty key or term frequency NULL)."""
    con.execute("CREATE OR REPLACE TEMP TABLE crm_key AS SELECT ? AS lot_id, ? AS run_id, ? AS entity",
                [key["lot_id"], key["run_id"], key["entity"]]).fetchall()
    vals = _pg_array([f"coalesce(r.f{k}, '')" for k in range(n_fields)], True)
    keys = _pg_array([f"r.b{k}" for k in range(n_keys)], True)
    parts = _pg_array([f"r.q{k}" for k in range(n_keys)], False)
    tfs = _pg_array([f"r.tf_{c}" for c in tf_cols], False)
    con.execute(f"COPY (SELECT k.lot_id, k.run_id, k.entity, r.uid, i.legacy_id, {vals}, {keys}, {parts}, {tfs}"
                f" FROM crm_plan r JOIN crm_ids i USING (uid) CROSS JOIN crm_key k ORDER BY r.uid)"
                f" TO '{path}' (FORMAT csv, HEADER false)").fetchall()


def _columns(con, table: str, prefix: str | None = None) -> list[str]:  # noqa: ANN001
    """The columns of DuckDB table, in order; with prefix, only those named prefix and a number (f0.., b0..)."""
    names = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    return names if prefix is None else [c for c in names if re.fullmatch(rf"{prefix}\d+", c)]


def blocked_upper(con) -> int:  # noqa: ANN001
    """An upper bound of the pairs the keys of crm_rows block (sum over keys of the pairs in each block)."""
    total = 0
    for b in _columns(con, "crm_rows", "b"):
        total += con.execute(f"SELECT coalesce(sum(c * (c - 1) // 2), 0) FROM (SELECT count(*) AS c FROM crm_rows"
                             f" WHERE {b} IS NOT NULL GROUP BY {b})").fetchall()[0][0]
    return int(total)


def lowest_cut(floor: float, blocked: int, n: int) -> float:
    """The lowest total weight a pair at probability floor can have whatever prior finish() learns: the
    prior is at most the blocked pairs' share of all pairs. The partitions keep the pairs above it."""
    prior = min(max(blocked / max(n * (n - 1) / 2, 1), 1e-15), 0.5)
    return math.log2(floor / (1 - floor)) - math.log2(prior / (1 - prior))


def partition_cut(hist: Sequence[tuple[int, int]], lowest: float, floor: float, n: int, partitions: int) -> float:
    """The total weight a partition keeps its pairs above: the pair at probability floor under SHARE_MARGIN
    times the prior its own pairs give -- the share of matches among them (EM as in _prior) times its pairs
    times the partitions, over all pairs of the n rows. Never below lowest. The prior learned over all
    partitions is close to what any one gives (a key value's partition is a hash: at 1M rows the 19
    partitions' cuts were within 0.13 bits), so a partition writes a small multiple of the pairs the
    cluster task uses, not every pair above lowest (24.8M of 281M compared at 3M rows, of which the cluster
    task used a few hundred thousand). Where the learned cut is below it anyway, partitioned.collect()
    scores that partition again: an untypical partition costs time (less, the smaller it is), never a pair."""
    blocked = sum(c for _, c in hist)
    if not blocked:
        return lowest
    bins = np.array([b for b, _ in hist], dtype=float)
    share = prior_share(bins, np.array([c for _, c in hist], dtype=float), blocked, blocked)
    prior = min(max(SHARE_MARGIN * share * blocked * partitions / max(n * (n - 1) / 2, 1), 1e-15), 0.5)
    return max(lowest, math.log2(floor / (1 - floor)) - math.log2(prior / (1 - prior)))


def partition_columns(n_fields: int, n_keys: int, tf_cols: Sequence[str]) -> list[tuple[str, str]]:
    """The columns of a partition's DuckDB table crm_part, (name, type) in order: uid, f0.. (compared
    values), b0.. (keys), q0.. (each key value's partition), tf_f.. (term frequencies, in tf_cols' order)."""
    columns = [("uid", "BIGINT")] + [(f"f{k}", "VARCHAR") for k in range(n_fields)]
    columns += [(f"b{k}", "VARCHAR") for k in range(n_keys)] + [(f"q{k}", "INTEGER") for k in range(n_keys)]
    return columns + [(f"tf_{c}", "DOUBLE") for c in tf_cols]


def scored_pairs(con, n_fields: int, cut: float) -> list[tuple[int, int, float, tuple[float, ...]]]:  # noqa: ANN001
    """The pairs of crm_scored (score_table) with a total at or above cut: (uid_l, uid_r, total, (weight per
    field)), in uid order."""
    weights = "".join(f", w{k}" for k in range(n_fields))
    return [(int(i), int(j), float(total), tuple(float(w) for w in ws)) for i, j, total, *ws in con.execute(
        f"SELECT uid_l, uid_r, total{weights} FROM crm_scored WHERE total >= {float(cut)!r}"
        " ORDER BY uid_l, uid_r").fetchall()]


def score_table(con, cols: list[str], live: list[str], tf_cols: Sequence[str], part: int,  # noqa: ANN001
                model: dict) -> list[tuple[int, int]]:
    """Score the pairs of the partition table crm_part (partition_columns) into DuckDB table
    crm_scored (uid_l, uid_r, bin, w0.. -- each field's weight --, total) and return the histogram of
    the totals, [(bin, pairs)]; [] when no key column has a value."""
    if not live:
        return []
    blocks = []
    for n, b in enumerate(live):
        earlier = " OR ".join(f"coalesce(l.{e} = r.{e}, FALSE)" for e in live[:n])
        blocks.append(f"SELECT l.uid AS uid_l, r.uid AS uid_r FROM crm_part l JOIN crm_part r ON l.{b} = r.{b}"
                      f" AND l.uid < r.uid WHERE l.q{b[1:]} = {int(part)}"
                      + (f" AND NOT ({earlier})" if earlier else ""))
    side = ", ".join(f'l."{c}" AS "{c}_l", r."{c}" AS "{c}_r"' for c in cols)
    side += "".join(f', l."tf_{c}" AS "tf_{c}_l", r."tf_{c}" AS "tf_{c}_r"' for c in tf_cols)
    terms = weight_terms(model["splink"], cols, tf=True)
    weights = ", ".join(f"coalesce({t}, 0.0) AS w{k}" for k, t in enumerate(terms))
    total = " + ".join(f"w{k}" for k in range(len(cols))) or "0.0"
    con.execute(
        f"CREATE OR REPLACE TABLE crm_scored AS WITH p AS ({' UNION ALL '.join(blocks)}),"
        f" v AS (SELECT p.uid_l, p.uid_r, {side} FROM p JOIN crm_part l ON l.uid = p.uid_l"
        f" JOIN crm_part r ON r.uid = p.uid_r), w AS (SELECT uid_l, uid_r, {weights} FROM v),"
        f" t AS (SELECT *, {total} AS total FROM w)"
        f" SELECT *, CAST(round(greatest(-60, least(60, total)) * {BINS_PER_BIT}) AS INTEGER) AS bin FROM t")
    return [(int(b), int(c)) for b, c in con.execute(
        "SELECT bin, count(*) FROM crm_scored GROUP BY 1 ORDER BY 1").fetchall()]


def prior_and_cut(hists: Sequence[Sequence], n: int, floor: float) -> tuple[float, int, float]:
    """(prior, blocked pairs, total weight at probability floor) from every partition's histogram: known
    before any pair is read, so the dedupe task reads only the pairs at or above the cut."""
    hist: Counter = Counter()
    for h in hists:
        for b, c in h:
            hist[b] += c
    blocked = sum(hist.values())
    bins = np.array(sorted(hist), dtype=float)
    prior = prior_share(bins, np.array([hist[b] for b in sorted(hist)], dtype=float), blocked, n * (n - 1) / 2)
    return prior, blocked, math.log2(floor / (1 - floor)) - math.log2(prior / (1 - prior))


def finish(scored: Sequence[dict], model: dict, n: int, floor: float) -> tuple[list[ScoredPair], int, dict]:
    """Over every partition's scores: the prior (EM over all the pairs' weights: _prior), the cut at
    probability floor, the pairs above it with their probability and evidence, and the model with its
    prior. The same whatever the number of partitions (a test holds 1 and 4 equal)."""
    prior, blocked, cut = prior_and_cut([s["hist"] for s in scored], n, floor)
    prior_weight = math.log2(prior / (1 - prior))
    names = model["fields"]
    pairs = []
    for s in scored:
        for i, j, total, weights in s["pairs"]:
            if total >= cut:
                evidence = tuple((f, round(w, 2)) for f, w in zip(names, weights, strict=True) if abs(w) >= 0.05)
                pairs.append(ScoredPair(min(i, j), max(i, j), 1 / (1 + 2 ** -(total + prior_weight)), evidence))
    pairs.sort(key=lambda p: (p.i, p.j))
    cols = [f"f{k}" for k in range(len(names))]
    weights = model_weights(model["splink"], dict(zip(cols, names, strict=True)))["fields"]
    out = {**model, "prior": prior, "weights": weights}
    return pairs, blocked, out


def _predict_stored(con, table: str, keys: list[str], splink_model: dict, prior: float,  # noqa: ANN001
                    names: Sequence[str], cols: list[str], floor: float, meta: dict
                    ) -> tuple[list[ScoredPair], int, dict]:
    """Score the pairs of a few rows that share a blocking key (keys: the key columns some row has) with a
    model learned before (term frequencies off), in plain DuckDB SQL built from the model's own level
    conditions and m/u: what Splink's predict computes for it (a test holds the two equal), without
    starting Splink -- its import and set-up cost seconds on the cutover path for a delta's handful of
    rows. The rows' own keys, not the model's rules: the lot's big blocks had window columns these lack."""
    rules = [f'l."{b}" = r."{b}"' for b in keys]
    side = ", ".join(f'l."{c}" AS "{c}_l", r."{c}" AS "{c}_r"' for c in cols)
    pairs = " UNION ".join(f'SELECT l.uid AS uid_l, r.uid AS uid_r FROM {table} l JOIN {table} r ON ({rule})'
                           f' AND l.uid < r.uid' for rule in rules)
    terms = weight_terms(splink_model, cols, tf=False)
    scored = con.execute(f"WITH p AS ({pairs}), v AS (SELECT p.uid_l, p.uid_r, {side} FROM p"
                         f" JOIN {table} l ON l.uid = p.uid_l JOIN {table} r ON r.uid = p.uid_r)"
                         f" SELECT uid_l, uid_r, {', '.join(f'coalesce({t}, 0.0)' for t in terms)} FROM v").fetchall()
    prior_weight = math.log2(prior / (1 - prior))
    cut = math.log2(floor / (1 - floor)) - prior_weight
    found = []
    for uid_l, uid_r, *weights in scored:
        total = sum(weights)
        if total >= cut:
            evidence = tuple((name, round(w, 2)) for name, w in zip(names, weights, strict=True) if abs(w) >= 0.05)
            found.append(ScoredPair(min(uid_l, uid_r), max(uid_l, uid_r), 1 / (1 + 2 ** -(total + prior_weight)),
                                    evidence))
    out = {"splink": splink_model, "prior": prior, "fields": meta["fields"], "compares": meta["compares"],
           "weights": model_weights(splink_model, dict(zip(cols, names, strict=True)))["fields"]}
    return found, len(scored), out
