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
from dataclasses import dataclass
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)
# EM needs enough pairs to tell matches from non-matches: below this many rows the weighted score
# (config thresholds) applies instead, and the log says so.
MIN_ROWS_TO_LEARN = 200
JW_LEVELS = (0.95, 0.88, 0.7)
THREADS = 2                # DuckDB's threads: the task's share of the worker
MEMORY_LIMIT = "2GB"       # DuckDB spills to disk beyond this (the task's peak stays under 3 GB)
EDIT_LEVELS = (1, 2)


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


def _comparison(column: str, compare: str, tf: bool):
    """Splink comparison levels for one field, by its comparison kind (the SQL runs in DuckDB)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    l, r = f"{column}_l", f"{column}_r"
    jw = f"jaro_winkler_similarity({l}, {r})"
    contained = f"(list_has_all({_words(l)}, {_words(r)}) OR list_has_all({_words(r)}, {_words(l)}))"
    if compare == "exact":
        c = cl.ExactMatch(column)
    elif compare == "jaro_winkler":
        c = cl.JaroWinklerAtThresholds(column, list(JW_LEVELS))
    elif compare == "tokens":
        c = cl.CustomComparison(output_column_name=column, comparison_levels=[
            cll.NullLevel(column), cll.ExactMatchLevel(column).configure(tf_adjustment_column=column if tf else None),
            cll.CustomLevel(f"{jw} >= 0.92", "Jaro-Winkler >= 0.92"),
            cll.CustomLevel(contained, "one name's words all in the other"),
            cll.CustomLevel(f"{jw} >= 0.8", "Jaro-Winkler >= 0.8"), cll.ElseLevel()])
        return c
    elif compare == "address":
        num_l, num_r = f"regexp_extract({l}, '^\\s*([0-9]+)', 1)", f"regexp_extract({r}, '^\\s*([0-9]+)', 1)"
        rest_l, rest_r = f"trim(regexp_replace({l}, '^\\s*[0-9]+', ''))", f"trim(regexp_replace({r}, '^\\s*[0-9]+', ''))"
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
    return c.configure(term_frequency_adjustments=True) if tf else c


def score_pairs(values: list[tuple], names: Sequence[str], compares: Sequence[str], keys: list[tuple],
                floor: float) -> tuple[list[ScoredPair], int, dict]:
    """values[i]: the row's transformed field values ('' = empty); keys[i]: its blocking key values (None =
    skipped for this row). Returns the pairs at or above probability floor, the number of pairs
    compared, and the learned model (match weights per field level, for the report)."""
    import pandas as pd
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.WARNING)
    cols = [f"f{k}" for k in range(len(names))]
    bcols = [f"b{k}" for k in range(len(keys[0]) if keys else 0)]
    frame = pd.DataFrame([(i, *(v or None for v in vals), *key) for i, (vals, key) in enumerate(zip(values, keys,
                                                                                                   strict=True))],
                         columns=["uid", *cols, *bcols])
    live = [b for b in bcols if frame[b].notna().any()]
    if not live:
        return [], 0, {}
    settings = SettingsCreator(
        link_type="dedupe_only", unique_id_column_name="uid",
        comparisons=[_comparison(c, cmp, tf=True) for c, cmp in zip(cols, compares, strict=True)],
        blocking_rules_to_generate_predictions=[block_on(b) for b in live],
        retain_intermediate_calculation_columns=True, retain_matching_columns=False, max_iterations=25)
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    db = DuckDBAPI(connection=con)
    linker = Linker(db.register(frame), settings, log_level=None)
    n = len(frame)
    linker.training.estimate_u_using_random_sampling(max_pairs=min(5e6, n * (n - 1) / 2), seed=1)
    trained = 0
    for b in live:  # each key's own pairs train the fields it does not block on
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(block_on(b))
            trained += 1
        except Exception as exc:  # noqa: BLE001 - a key too sparse to train on: the others still do
            log.info("EM on blocking key %s skipped: %s", b, str(exc).splitlines()[0])
    if not trained:
        return [], 0, {}
    # every blocked pair, scored in DuckDB; only the total weights (for the prior) and the pairs above the
    # floor come back to Python, so memory follows the matches, not the pairs compared
    pred = linker.inference.predict()
    present = {d[0].lower() for d in con.execute(f"SELECT * FROM {pred.physical_name} LIMIT 0").description}
    terms = [[f"coalesce({w}{c}, 0)" for w in ("mw_", "mw_tf_adj_") if f"{w}{c}" in present] or ["0"]
             for c in cols]
    total_sql = " + ".join(t for ts in terms for t in ts)
    totals = con.execute(f"SELECT CAST({total_sql} AS DOUBLE) AS w FROM {pred.physical_name}").fetchnumpy()["w"]
    blocked = len(totals)
    prior = _prior(totals, blocked, n * (n - 1) / 2)
    prior_weight = math.log2(prior / (1 - prior))
    cut = math.log2(floor / (1 - floor)) - prior_weight
    fields_sql = ", ".join(f"CAST({' + '.join(ts)} AS DOUBLE)" for ts in terms)
    found = con.execute(f"SELECT uid_l, uid_r, CAST({total_sql} AS DOUBLE), {fields_sql} FROM {pred.physical_name}"
                        f" WHERE {total_sql} >= {cut!r}").fetchall()
    pairs = []
    for uid_l, uid_r, total, *weights in found:
        evidence = tuple((name, round(w, 2)) for name, w in zip(names, weights, strict=True) if w != 0)
        probability = 1 / (1 + 2 ** -(total + prior_weight))
        pairs.append(ScoredPair(min(uid_l, uid_r), max(uid_l, uid_r), probability, evidence))
    model = _model(linker)
    model["probability_two_random_records_match"] = prior
    con.close()
    return pairs, blocked, model


def _prior(log2_factors: np.ndarray, blocked: int, total: int) -> float:
    """The probability that two random rows match, learned without labels: the share of matches among
    the blocked pairs, by EM over the pairs' Bayes factors (m and u fixed), scaled to all pairs (the
    blocking keeps nearly every match and a sliver of the non-matches)."""
    if blocked == 0:
        return 1e-9
    factors = np.exp2(np.clip(log2_factors, -60, 60))
    share = 0.5
    for _ in range(100):
        posterior = share * factors / (share * factors + 1 - share)
        new = float(posterior.mean())
        if abs(new - share) < 1e-7:
            break
        share = new
    return min(max(share * blocked / total, 1e-12), 0.5)


def _model(linker) -> dict:  # noqa: ANN001
    out = {"probability_two_random_records_match": None, "fields": {}}
    try:
        settings = linker.misc.save_model_to_json()
        out["probability_two_random_records_match"] = settings.get("probability_two_random_records_match")
        for comp in settings.get("comparisons", []):
            levels = []
            for lvl in comp.get("comparison_levels", []):
                m, u = lvl.get("m_probability"), lvl.get("u_probability")
                if m and u:
                    levels.append({"level": lvl.get("label_for_charts"), "weight": round(math.log2(m / u), 2)})
            out["fields"][comp.get("output_column_name")] = levels
    except Exception as exc:  # noqa: BLE001 - the model summary is for the report only
        log.info("model summary not available: %s", exc)
    return out
