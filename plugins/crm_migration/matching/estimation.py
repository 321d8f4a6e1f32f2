"""The estimation behind the probabilistic matching (crm_migration.matching.linkage runs it): a Splink
model's match weights as SQL terms, m probabilities learned by EM under training rules chosen from the
data, the prior (the share of matches) by EM over binned Bayes factors, and the learned model as the
report shows it. Pure functions over a DuckDB connection and Splink's model dictionaries.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
import re
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)
MIN_TRAINING_PAIRS = 30    # fewer pairs than this under a training rule: EM is not run on it
SELECTIVE_U = 0.001        # a field whose random pairs agree less often than this selects matches
# an identifier a row shares with at most this many others on average (u x rows) names a person (an e-mail);
# more, a group (a company's switchboard, the company itself): not evidence that a training rule's pairs match
PERSON_SHARE = 3.0
M_FLOOR = 1e-4             # no level's m is exactly 0
MAX_EM_PAIRS = 2_000_000   # EM under a training rule on at most about this many of its pairs (sampled)
EM_SAMPLE_MOD = 10_007
BINS_PER_BIT = 20          # the prior's EM runs on the pairs' log2 Bayes factors binned this finely


def weight_terms(splink_model: dict, cols: Sequence[str], tf: bool) -> list[str]:
    """Per compared column, the SQL of its match weight over "<col>_l"/"<col>_r" (and "tf_<col>_l"/_r): the
    model's level conditions in order with their log2(m/u), and with tf the term-frequency adjustment of
    the adjusted level as Splink computes it (comparison_level._tf_adjustment_sql): weight * (log2 u of the
    exact level - log2 of the larger term frequency of the two values)."""
    by_col = {comp["output_column_name"]: comp for comp in splink_model.get("comparisons", [])}
    terms = []
    for c in cols:
        whens = []
        for lvl in by_col[c]["comparison_levels"]:
            cond, expr = lvl["sql_condition"].strip(), repr(_level_weight(lvl))
            adjust, weight = lvl.get("tf_adjustment_column"), float(lvl.get("tf_adjustment_weight") or 0.0)
            if tf and adjust and weight and not lvl.get("is_null_level") and cond.upper() != "ELSE":
                a, b = f'"tf_{adjust}_l"', f'"tf_{adjust}_r"'
                floor = float(lvl.get("tf_minimum_u_value") or 0.0)
                expr += (f" + CASE WHEN coalesce({a}, {b}) IS NOT NULL THEN {weight!r} * ("
                         f"{math.log2(_u_exact(by_col[c], adjust, lvl))!r} - log2(greatest(coalesce({a}, {b}),"
                         f" coalesce({b}, {a}), {floor!r}))) ELSE 0.0 END")
            if cond.upper() == "ELSE":
                whens.append(f"ELSE {expr}")
                break
            whens.append(f"WHEN {cond} THEN {expr}")
        terms.append(f"CAST(CASE {' '.join(whens)} END AS DOUBLE)" if whens else "0.0")
    return terms


def _u_exact(comp: dict, column: str, level: dict) -> float:
    """u of the comparison's exact-match level on column (what a term-frequency adjustment is relative to)."""
    exact = re.compile(rf'^"?{re.escape(column)}_l"?\s*=\s*"?{re.escape(column)}_r"?$')
    for lvl in comp["comparison_levels"]:
        if exact.match(lvl["sql_condition"].strip()) and lvl.get("u_probability") not in (None, "level not observed"):
            return float(lvl["u_probability"])
    return float(level["u_probability"])


def complete(splink_model: dict) -> dict:
    """The model with every level's m and u written out: a level EM never saw keeps Splink's default
    (its `_default_m_values` / `_default_u_values`, what its Linker falls back on), so the stored model
    scores the same without Splink. Splink is imported only when a level lacks one."""
    import copy

    gaps = [(comp, lvl) for comp in splink_model.get("comparisons", []) for lvl in comp["comparison_levels"]
            if not lvl.get("is_null_level") and (lvl.get("m_probability") is None or lvl.get("u_probability") is None)]
    if not gaps:
        return splink_model
    from splink.internals.comparison_level import _default_m_values, _default_u_values

    model = copy.deepcopy(splink_model)
    for comp in model["comparisons"]:
        levels = [lvl for lvl in comp["comparison_levels"] if not lvl.get("is_null_level")]
        m_default, u_default = _default_m_values(len(levels)), _default_u_values(len(levels))
        for vector, lvl in zip(range(len(levels) - 1, -1, -1), levels, strict=True):  # top level first
            if lvl.get("m_probability") is None:
                lvl["m_probability"] = m_default[vector]
            if lvl.get("u_probability") is None:
                lvl["u_probability"] = u_default[vector]
    return model


def _level_weight(level: dict) -> float:
    """A level's match weight as Splink computes it (comparison_level._match_weight): log2(m/u), m and u
    clamped above 0, 'level not observed' read as 1e-6, the null level no evidence."""
    if level.get("is_null_level"):
        return 0.0
    m, u = (1e-6 if level.get(k) == "level not observed" else level.get(k) for k in ("m_probability",
                                                                                     "u_probability"))
    if m is None or u is None:
        raise ValueError(f"the stored model's level {level.get('label_for_charts')!r} has no m or u probability")
    return math.log2(max(float(m), 1e-300) / max(float(u), 1e-300))


def without_tf(splink_model: dict) -> dict:
    """The model without term-frequency adjustments: on a handful of rows every value is frequent."""
    import copy

    plain = copy.deepcopy(splink_model)
    for comp in plain.get("comparisons", []):
        for lvl in comp.get("comparison_levels", []):
            lvl.pop("tf_adjustment_column", None)
            lvl.pop("tf_adjustment_weight", None)
    return plain


def smoothed(m: list[float]) -> list[float]:
    """An m distribution with no level at exactly 0 (a level no match was seen at in one rule's pairs is
    rare, not impossible), summing to 1."""
    m = [max(x, M_FLOOR) for x in m]
    return [x / sum(m) for x in m]


def with_m(base: dict, learned: dict[str, list[list[float]]]) -> dict:
    """The model with each field's m: the median of what the rules that learn it found."""
    import copy

    model = copy.deepcopy(base)
    model["probability_two_random_records_match"] = 1e-4  # unused: the prior is learned after (_prior)
    for comp in model["comparisons"]:
        estimates = learned.get(comp["output_column_name"])
        levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
        if not estimates:
            continue
        # the median per level: one rule whose pairs were mostly not matches (a shared switchboard
        # number) must not drag every other rule's estimate with it, as a mean would
        median = [float(np.median([e[k] for e in estimates])) for k in range(len(levels))]
        for lv, m in zip(levels, smoothed(median), strict=True):
            lv["m_probability"] = m
    return model


# Each identifier ties at most this many keys' pairs for EM: their estimates agree (each rule learns the same
# fields from mostly true matches), and each rule costs a pass over its pairs (ten keys times four
# identifiers were 53 rules and 40 s on 20,000 people, for the same weights)
RULES_PER_IDENTIFIER = 3


def training_rules(base: dict, live: list[str], cols: list[str], identifiers: list[str],
                    in_key: dict[str, set[str]], con, n: int) -> list[tuple[str, set[str]]]:  # noqa: ANN001
    """The pairs EM learns m from, and the fields each learns. A blocking key alone (same soundex and
    initial) mostly pairs namesakes: EM on those learns "same name" as "same person", and an e-mail or a
    company that disagrees ends up weighing nothing. So each key is combined with one identifier
    agreeing -- a field compared exactly (an e-mail, a company, a phone: codes, not names) that is not
    part of the key and whose random pairs agree less than once in 1/SELECTIVE_U (from the u just
    sampled) -- pairs that are mostly true matches. A rule learns every field but its identifier and its
    key's fields; a field no such rule learns is learned from the keys alone.

    A rule that no person identifier ties (PERSON_SHARE: an e-mail is one, a company or its switchboard
    number is not) is left out when the person identifiers it neither requires nor is keyed on disagree on
    most of its pairs (_mostly_not_matches): pairs of one switchboard number at one company are colleagues,
    and EM on them learns that names weigh nothing and an agreeing e-mail counts against a match. A rule a
    person identifier ties is kept as it is: its pairs share an e-mail, and a duplicate keyed in again with
    a new phone number must not make them look like strangers. The same holds for a key alone (a phone
    key's pairs), unless leaving it out would leave a field with no rule at all."""
    u_exact = _u_of_exact(base, cols)
    selective = [c for c in identifiers if u_exact.get(c) is not None and u_exact[c] < SELECTIVE_U]
    people = {c for c in selective if u_exact[c] * n <= PERSON_SHARE}
    rules, covered = [], set()
    taken: Counter = Counter()  # rules kept per identifier
    keyed: set[frozenset] = set()  # a key's window columns (forward, backward) block the same values
    for b in live:
        if frozenset(in_key[b]) in keyed:
            continue
        keyed.add(frozenset(in_key[b]))
        for c in selective:
            if c in in_key[b] or taken[c] >= RULES_PER_IDENTIFIER:
                continue
            rule = f"l.{b} = r.{b} AND l.{c} = r.{c}"
            pairs, refuted = _mostly_not_matches(con, rule, _witnesses(people, in_key[b] | {c}, set()))
            if not refuted and pairs >= MIN_TRAINING_PAIRS:
                learns = set(cols) - {c} - in_key[b]
                rules.append((_sampled(rule, pairs), learns))
                covered |= learns
                taken[c] += 1
    missing = set(cols) - covered
    alone = []
    for b in live if missing else ():  # only the keys that learn something: a rule whose estimates are all
        learns = missing - in_key[b]   # dropped is waste, and a key's pairs are the most EM works through
        if learns:
            # the identifiers it learns are what EM is to weigh on these pairs, not evidence against them
            others = _witnesses(people, in_key[b], learns)
            pairs, refuted = _mostly_not_matches(con, f"l.{b} = r.{b}", others) if others else (
                _key_pairs(con, b), False)
            alone.append((_sampled(f"l.{b} = r.{b}", pairs), learns, refuted))
    kept = [(r, learns) for r, learns, refuted in alone if not refuted]
    unlearnt = missing - {f for _, learns in kept for f in learns}
    # a field only refuted keys would learn: learned from them all the same (no estimate is worse)
    rules += kept + [(r, learns) for r, learns, refuted in alone if refuted and learns & unlearnt]
    log.info("match weights learned from %d rules: %s", len(rules), [r for r, _ in rules])
    return rules


def _witnesses(people: set[str], tied_by: set[str], weighed: set[str]) -> list[str]:
    """The person identifiers that can tell whether a rule's pairs are mostly matches, sorted: none when one
    ties the rule (tied_by: what its pairs agree on by construction, its key's fields and its identifier);
    else those neither tying it (no evidence either way) nor weighed (what EM is to learn from its pairs)."""
    return [] if tied_by & people else sorted(people - tied_by - weighed)


def _key_pairs(con, b: str) -> int:  # noqa: ANN001
    """The pairs blocking key b makes in crm_rows, from its block sizes (no join)."""
    return int(con.execute(f"SELECT coalesce(sum(c * (c - 1) // 2), 0) FROM (SELECT count(*) AS c FROM crm_rows"
                           f" WHERE {b} IS NOT NULL GROUP BY {b})").fetchall()[0][0])


def _mostly_not_matches(con, rule: str, others: list[str]) -> tuple[int, bool]:  # noqa: ANN001
    """(the rule's pairs in crm_rows, whether the identifiers others disagree on most of its pairs where
    both sides have one: at least MIN_TRAINING_PAIRS such pairs, and fewer than half agreeing)."""
    known = " OR ".join(f"(l.{d} IS NOT NULL AND r.{d} IS NOT NULL)" for d in others) or "FALSE"
    agree = " OR ".join(f"l.{d} = r.{d}" for d in others) or "FALSE"
    pairs, comparable, agreeing = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {known}), count(*) FILTER (WHERE {agree})"
        f" FROM crm_rows l JOIN crm_rows r ON l.uid < r.uid AND {rule}").fetchall()[0]
    refuted = comparable >= MIN_TRAINING_PAIRS and agreeing < 0.5 * comparable
    if refuted:
        log.info("training rule %s left out: other identifiers (%s) agree on %d of %d pairs", rule,
                 ", ".join(others), agreeing, comparable)
    return int(pairs), refuted


def _sampled(rule: str, pairs: int) -> str:
    """The rule, its pairs sampled down to about MAX_EM_PAIRS (a fixed hash of the pair's uids: the same
    sample on every run). EM's m are shares among matches: a uniform sample of the pairs estimates them as
    well as all of them, and a million rows' keys block tens of millions of pairs (minutes of EM each)."""
    if pairs <= MAX_EM_PAIRS:
        return rule
    keep = math.ceil(EM_SAMPLE_MOD * MAX_EM_PAIRS / pairs)
    return f"{rule} AND (l.uid * 7919 + r.uid * 104729) % {EM_SAMPLE_MOD} < {keep}"


def _u_of_exact(model: dict, cols: list[str]) -> dict[str, float]:
    """u of each field's exact-match level: the share of random pairs that agree exactly. A level no sampled
    random pair reached (Splink then writes no u) agrees rarer than once in the pairs sampled: 0.0 here. (Read
    as unknown, it made the e-mail of a million contacts -- no two of 5M random pairs share one -- no
    identifier at all, while 200k contacts' e-mail was one.)"""
    out = {}
    for comp in model.get("comparisons", []):
        levels = [lv for lv in comp.get("comparison_levels", []) if not lv.get("is_null_level")]
        if levels:
            u = levels[0].get("u_probability")
            out[comp.get("output_column_name")] = 0.0 if u is None else float(u)
    return {c: out[c] for c in cols if c in out}


def prior_share(bins: np.ndarray, counts: np.ndarray, blocked: int, total: int) -> float:
    """The probability that two random rows match, learned without labels: the share of matches among
    the blocked pairs, by EM over the pairs' Bayes factors (m and u fixed), scaled to all pairs (the
    blocking keeps nearly every match and a sliver of the non-matches).

    EM on this share has more than one fixed point when many pairs carry strong but not decisive
    evidence (namesakes: the same full name, nothing else known): started high, it settles where every
    namesake is a match, and the share it finds merges them all. So it starts from below -- one match
    in the blocked pairs -- and climbs to the smallest share the evidence supports. The factors are
    binned (BINS_PER_BIT) in DuckDB, so a million-row lot's hundreds of millions of pairs come back to
    Python as a few thousand (bin, count) rows. bins: log2 factor * BINS_PER_BIT, rounded."""
    if blocked == 0:
        return 1e-9
    factors = np.exp2(np.asarray(bins, dtype=float) / BINS_PER_BIT)
    counts = np.asarray(counts, dtype=float)
    share = 1.0 / blocked
    for _ in range(100_000):
        posterior = share * factors / (share * factors + 1 - share)
        new = float((posterior * counts).sum() / blocked)
        if abs(new - share) <= 1e-9 * max(share, 1e-12) or abs(new - share) < 1e-15:
            share = new
            break
        share = new
    return min(max(share * blocked / total, 1e-15), 0.5)


def model_weights(model: dict, names: dict[str, str]) -> dict:
    """Match weight (log2 m/u) of each level of each field: what the report shows of the learned model."""
    out: dict = {"fields": {}}
    for comp in model.get("comparisons", []):
        levels = []
        for lvl in comp.get("comparison_levels", []):
            m, u = lvl.get("m_probability"), lvl.get("u_probability")
            if m and u:
                levels.append({"level": lvl.get("label_for_charts"), "weight": round(math.log2(m / u), 2)})
        out["fields"][names.get(comp.get("output_column_name"), comp.get("output_column_name"))] = levels
    return out
