"""Dedupe: blocking, jellyfish pair scores, transitive clusters, survivorship, audit.

- Blocking: rows sharing a key (e.g. soundex(last name) + first initial) are compared;
  comparisons grow with block sizes, not n^2. Oversized blocks are compared in sorted windows.
- Scoring: a weighted mean of per-field similarities (Jaro-Winkler, Levenshtein, exact) from
  config; a field empty on either side counts as ``missing_similarity``.
- Clustering: union-find over pairs at or above ``threshold``; a cluster larger than
  ``max_cluster_size`` is left unmerged (a runaway chain). Pairs in
  ``[review_threshold, threshold)`` go to a review list instead of being merged.
- Survivorship: one survivor per cluster (most recent, most complete or oldest row), then
  per-field rules; gaps are filled from the other rows.
- Deterministic: rows are sorted by legacy id first; the same input gives the same result
  whatever the row order.
"""

from __future__ import annotations

import gc
import logging
import shutil
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import combinations
from collections.abc import Callable, Iterator, Sequence


from crm_migration.model.config import DedupeRules, FieldComparison
from crm_migration.matching.similarity import COMPARATORS, TRANSFORMS, capped, compared_values
from crm_migration.matching.splitting import Vetoes, split, veto_columns, without_contradictions
from crm_migration.matching.survivorship import survive
from crm_migration.rules.cleanse import UNMATCHED, defect_entry

log = logging.getLogger(__name__)
MAX_BLOCK = 100  # weighted method: a larger block is compared by sorted neighbourhood, not all pairs
WINDOW = 10  # neighbours compared on each side in a large block, after sorting on the compared fields
# probabilistic method: a block larger than this is compared in sorted windows of this many rows, in two
# orders (bounded_blocks): a row's comparisons are then bounded by the keys it has, whatever the row count
MATCH_WINDOW = 40



@dataclass
class DedupeResult:
    survivors: list[dict]
    merges: list[tuple[str, str, float, str]]  # legacy_id, survivor_legacy_id, score, rule
    review: list[tuple[str, str, float, str]] = field(default_factory=list)  # legacy_id_a, legacy_id_b, score, why
    pairs_compared: int = 0
    oversized_clusters: int = 0
    model: dict | None = None  # the probabilistic method's model (learned, or the one given)
    kept_as_is: list[str] = field(default_factory=list)  # merged with none, survivor = clean row (not in survivors)
    # rows with a defect (rules.cleanse.MATCHABLE) merged into no complete row: (legacy_id, code, detail)
    quarantined: list[tuple[str, str, str]] = field(default_factory=list)


class _UnionFind:
    """Union-find where two clusters holding different labels (each already one migrated record, with
    its own target id) never join: that would merge two target records, which is left to review."""

    def __init__(self, n: int, labels: dict[int, str]):
        self.parent = list(range(n))
        self.label = dict(labels)

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> bool:
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return True
        li, lj = self.label.get(ri), self.label.get(rj)
        if li is not None and lj is not None and li != lj:
            return False
        root, child = min(ri, rj), max(ri, rj)
        self.parent[child] = root
        if self.label.get(root) is None and (li or lj) is not None:
            self.label[root] = li if li is not None else lj
        return True


def _part_fields(part: str) -> list[str]:
    """The fields of a blocking part: 'last_name:soundex' -> [last_name]; 'first_name|last_name:soundex' ->
    both (a symmetric part: their transformed values sorted, so a row with first and last name swapped
    gets the same key)."""
    return part.partition(":")[0].split("|")


def _key_fn(parts: Sequence[str]) -> Callable[[dict], str | None]:
    specs = [(_part_fields(p), TRANSFORMS[p.partition(":")[2] or "fold"]) for p in parts]

    def key(row: dict) -> str | None:
        out = []
        for fieldnames, fn in specs:
            values = []
            for fieldname in fieldnames:
                v = row.get(fieldname)
                t = fn(capped(v)) if v not in (None, "") else ""
                if not t:
                    return None  # a key with an empty part would lump unrelated rows together
                values.append(t)
            out.append("+".join(sorted(values)))
        return "\x1f".join(out)

    return key


def candidate_pairs(rows: list[dict], blocking: Sequence[Sequence[str]],
                    sort_keys: Sequence[str] | None = None) -> list[tuple[int, int]]:
    """Pairs of row indexes sharing a blocking key. A block larger than MAX_BLOCK (a common name)
    is sorted on sort_keys (the compared fields) and each row is paired with its WINDOW next rows."""
    pairs: set[tuple[int, int]] = set()
    keys = block_keys(rows, blocking)
    for k in range(len(keys[0]) if keys else 0):
        blocks: dict[str, list[int]] = defaultdict(list)
        for i, row_keys in enumerate(keys):
            if row_keys[k] is not None:
                blocks[row_keys[k]].append(i)
        for members in blocks.values():
            if len(members) <= MAX_BLOCK:
                pairs.update(combinations(members, 2))
            else:
                if sort_keys is not None:
                    members = sorted(members, key=lambda m: (sort_keys[m], m))
                for n, i in enumerate(members):
                    pairs.update((min(i, j), max(i, j)) for j in members[n + 1:n + 1 + WINDOW])
    return sorted(pairs)


class PairScorer:
    """Weighted mean of field similarities; fields are transformed once per row."""

    def __init__(self, fields: Sequence[FieldComparison], missing_similarity: float):
        self.fields = list(fields)
        self.missing = missing_similarity
        self.total = sum(f.weight for f in self.fields)
        self.compare = [COMPARATORS[f.compare] for f in self.fields]
        self.transform = [TRANSFORMS[f.transform] for f in self.fields]
        at = {f.field: k for k, f in enumerate(self.fields)}
        self.other = [at.get(f.swapped_with) if f.swapped_with else None for f in self.fields]
        self.vetoes = Vetoes(self.fields)

    def prepare(self, rows: list[dict]) -> list[tuple]:
        return compared_values(rows, self.fields)

    def score(self, a: tuple, b: tuple) -> float:
        if self.vetoes and self.vetoes.first(a, b):
            return 0.0  # two companies at one address: never the same record
        s = 0.0
        for f, cmp, o, x, y in zip(self.fields, self.compare, self.other, a, b, strict=True):
            if x and y:
                sim = cmp(x, y)
                if o is not None and a[o] and b[o]:  # first and last name keyed the other way round
                    sim = max(sim, min(cmp(x, b[o]), cmp(a[o], y)))
                s += f.weight * sim
            else:
                s += f.weight * self.missing
        return s / self.total

    def explain(self, a: tuple, b: tuple) -> str:
        """The fields that agree (similarity >= 0.9): the 'rule' kept in the merge map."""
        agree = [f.field for f, cmp, x, y in zip(self.fields, self.compare, a, b, strict=True)
                 if x and y and cmp(x, y) >= 0.9]
        return "+".join(agree) or "weak"


def _weighted_pairs(entity: str, rows: list[dict], rules: DedupeRules) -> tuple[list, int, float, float]:
    """(pairs as (i, j, score, explain()), pairs compared, merge threshold, review floor) of the weighted
    mean similarity."""
    scorer = PairScorer(rules.fields, rules.missing_similarity)
    prepared = scorer.prepare(rows)
    pairs = candidate_pairs(rows, rules.blocking, ["\x1f".join(p) for p in prepared])
    review_floor = rules.review_threshold if rules.review_threshold is not None else 2.0
    floor = min(review_floor, rules.threshold)
    scored = []
    for i, j in pairs:
        score = scorer.score(prepared[i], prepared[j])
        if score >= floor:
            scored.append((i, j, round(score, 4), lambda a=prepared[i], b=prepared[j]: scorer.explain(a, b)))
    return scored, len(pairs), rules.threshold, review_floor


def probabilistic_inputs(entity: str, rows: list[dict], rules: DedupeRules) -> tuple[list, list, list, list]:
    """(fields, each row's compared values, its blocking keys -- large blocks in windows --, the fields of
    each key) for the probabilistic method; rows in the order of their legacy ids."""
    present = {f for f in input_fields(entity, rules) if any(r.get(f) not in (None, "") for r in rows)}
    fields, key_fields, inputs = batch_inputs(entity, rules, present)
    with gc_paused():
        values, keys = inputs(rows)
    keys, key_fields = bounded_blocks(keys, key_fields, values, [f.field for f in fields])
    return fields, values, keys, key_fields


def batch_inputs(entity: str, rules: DedupeRules, present: set[str]) -> tuple[list, list[set[str]], Callable]:
    """(fields, the fields of each blocking key, inputs) for the probabilistic method, where inputs(rows)
    gives those rows' (compared values, blocking keys), large blocks left whole (bounded_blocks); present:
    the fields some row of the lot has a value in. The lot DAG's dedupe_prepare calls inputs batch by batch,
    so a big lot's rows are never all held in Python."""
    fields = list(rules.fields)
    usable = _usable_of(present, rules.blocking)
    key_fns = [_key_fn(kept) for kept in usable]

    def inputs(rows: list[dict]) -> tuple[list[tuple], list[tuple]]:
        return compared_values(rows, fields), [tuple(k(r) for k in key_fns) for r in rows]

    return fields, [{f for p in parts for f in _part_fields(p)} for parts in usable], inputs


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector off for a block that builds millions of tuples and makes no reference
    cycles (tuples, lists and dicts of strings): each of its full collections walks every tuple built so
    far, a fifth of the time of reading a million rows' values and keys (30 of 149 s, measured)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def input_fields(entity: str, rules: DedupeRules) -> set[str]:
    """The fields the probabilistic method reads: the compared fields and the blocking keys' fields."""
    fields = rules.fields
    blocking = rules.blocking
    return {f.field for f in fields} | _blocking_fields(blocking)


def _blocking_fields(blocking: Sequence[Sequence[str]]) -> set[str]:
    return {f for parts in blocking for p in parts for f in _part_fields(p)}


def _probabilistic_pairs(entity: str, rows: list[dict], rules: DedupeRules, model: dict | None = None,
                         partitions: int = 1) -> tuple[list, int, float, float, dict]:
    """The same, with Fellegi-Sunter probabilities learned from the rows, or from the model given
    (crm_migration.linkage); also returns the model."""
    from crm_migration.matching import linkage

    fields, values, keys, key_fields = probabilistic_inputs(entity, rows, rules)
    scored, compared, learned = linkage.score_pairs(values, [f.field for f in fields], compare_codes(fields),
                                                    keys, rules.review_probability, key_fields, model, partitions)
    return (_not_vetoed(scored, values, fields), compared, rules.match_probability, rules.review_probability,
            learned)


def _not_vetoed(scored: list, values: Sequence[tuple] | dict[int, tuple], fields: Sequence) -> list[tuple]:
    """The scored pairs as (i, j, probability, explain) but those a must_agree field vetoes (values: the
    rows' compared values by position, at least for the rows of a pair when a field must agree)."""
    vetoes = Vetoes(fields)
    return [(p.i, p.j, round(p.probability, 4), p.explain) for p in scored
            if not (vetoes and vetoes.first(values[p.i], values[p.j]))]


def bounded_blocks(keys: list[tuple], key_fields: list[set[str]], values: Sequence[tuple],
                   names: Sequence[str]) -> tuple[list[tuple], list[set[str]]]:
    """Blocks larger than MATCH_WINDOW rows (a common name: all its pairs would be most of the work and
    nearly all non-matches) are compared by multi-pass sorted neighbourhood (Hernandez and Stolfo): windows
    of MATCH_WINDOW rows of the block sorted on the compared values (values[i], one per field of names), the
    key's own fields first, in full (a block of a surname's soundex and a first initial holds many
    spellings: Smith John next to Smith Jon, whatever their e-mails), then the others, as the row's key;
    and windows of the block sorted on the same values spelled backwards (a typo near the start of a value
    moves a row far in the first order, not in this one), as a second key column. (The other fields first,
    as before 2026-12-03, put a duplicate with another or no e-mail far from its twin in both orders: at
    1M planted contacts 97.5% of the duplicate pairs shared a window, 99.4% now, for the same pairs.) A
    row's pairs are then bounded by its keys (at most 2 x MATCH_WINDOW per key) whatever the row count: the
    pairs grow with the rows, not their square, once blocks pass a window. Sorted in DuckDB
    (linkage.window_blocks), which dedupe_prepare runs on its table of the rows directly."""
    from crm_migration.matching import linkage

    if not keys:
        return keys, key_fields
    con, spill = linkage.duckdb_session()
    try:
        linkage.rows_table(con, list(values), keys, len(names))
        key_fields = linkage.window_blocks(con, list(key_fields), names, MATCH_WINDOW)
        bcols = [f"b{k}" for k in range(len(key_fields))]
        return [tuple(r) for r in con.execute(f"SELECT {', '.join(bcols)} FROM crm_rows ORDER BY uid").fetchall()], \
            key_fields
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def compare_codes(fields: Sequence) -> list[str]:
    """Each field's comparison as the probabilistic model records it: its kind, and for a name compared
    crosswise with another field '~' and that field's position (name~1: swapped with the second field)."""
    names = [f.field for f in fields]
    return [f.compare + (f"~{names.index(f.swapped_with)}" if f.swapped_with else "") for f in fields]


def fits(model: dict | None, entity: str, rules: DedupeRules) -> bool:
    """A stored model fits the rules when they still compare the same fields the same way."""
    fields = rules.fields or ()
    return bool(model) and model.get("fields") == [f.field for f in fields] and \
        model.get("compares") == compare_codes(fields)


def block_keys(rows: list[dict], blocking: Sequence[Sequence[str]]) -> list[tuple]:
    """Each row's value of each blocking key (None: a part is empty for this row, which is then compared
    through its other keys). A part empty in every row (a column the lot does not have) is left out of
    its key, so the key still blocks on its other parts instead of switching off for the whole set."""
    usable = [_key_fn(kept) for kept in _usable(rows, blocking)]
    return [tuple(k(r) for k in usable) for r in rows]


def _usable(rows: list[dict], blocking: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """The blocking keys without their parts empty in every row; a key left with no part is dropped."""
    return _usable_of({f for f in _blocking_fields(blocking) if any(r.get(f) not in (None, "") for r in rows)},
                      blocking)


def _usable_of(present: set[str], blocking: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """The blocking keys without their parts whose fields have no value in any row (present: the fields
    that have one somewhere); a key left with no part is dropped."""
    usable = []
    for parts in blocking:
        kept = tuple(p for p in parts if all(f in present for f in _part_fields(p)))
        if kept != tuple(parts):
            log.info("blocking key %s: %s empty in every row, left out", "+".join(parts),
                     sorted(set(parts) - set(kept)))
        if kept:
            usable.append(kept)
    return usable


def effective_rules(entity: str, rules: DedupeRules) -> DedupeRules:
    """The rules, switched off when they name no fields or no blocking keys (of their own or of their preset:
    config/matching_presets.yaml). Never by the entity's name: a renamed entity dedupes as before."""
    if not rules.fields or not rules.blocking:
        return rules.model_copy(update={"enabled": False})
    return rules


def learns(entity: str, n_rows: int, rules: DedupeRules) -> bool:
    """The probabilistic method learns its weights from these rows (enough of them to learn from)."""
    rules = effective_rules(entity, rules)
    return rules.enabled and rules.method == "probabilistic" and n_rows >= max(2, _min_rows_to_learn())


def dedupe_rows(entity: str, rows: list[dict], rules: DedupeRules, fixed: frozenset[str] = frozenset(),
                labels: dict[str, str] | None = None, model: dict | None = None, partitions: int = 1
                ) -> DedupeResult:
    """fixed: legacy ids of already migrated records (delta sync): they survive, never merge together.
    labels: legacy id -> target id of the migrated record the row belongs to: rows of two different
    target records are never merged (the pair goes to review). model: for the probabilistic method, a
    model learned before (the lot's): the delta's few rows are scored with it, not learned from.
    partitions: the probabilistic pairs are scored in this many partitions (the same result whatever the
    number). A lot's partitioned dedupe clusters its pairs with dedupe_prescored."""
    rows = sorted(rows, key=lambda r: r["legacy_id"])
    rules = effective_rules(entity, rules)
    defects = {r["legacy_id"]: r["defect"] for r in rows if r.get("defect")}
    if not rules.enabled or len(rows) < 2:
        return _alone(rows, defects)
    learned = None
    if rules.method == "probabilistic" and (fits(model, entity, rules) or len(rows) >= _min_rows_to_learn()):
        scored, compared, threshold, review_floor, learned = _probabilistic_pairs(
            entity, rows, rules, model if fits(model, entity, rules) else None, partitions)
    else:
        if rules.method == "probabilistic":
            log.info("%s: %d rows are too few to learn match weights from and no model was learned before:"
                     " weighted scores and thresholds apply", entity, len(rows))
        scored, compared, threshold, review_floor = _weighted_pairs(entity, rows, rules)
    ids = [r["legacy_id"] for r in rows]
    return cluster_scored(entity, ids, scored, compared, threshold, review_floor, rules, learned,
                          lambda wanted: {i: rows[i] for i in wanted}, fixed, labels, defects=defects)


def _alone(rows: list[dict], defects: dict[str, str]) -> DedupeResult:
    """No dedupe (off, or a single row): each row its own survivor, a row with a defect quarantined."""
    quarantined = [defect_entry(lid, d, UNMATCHED) for lid, d in sorted(defects.items())]
    kept = [r for r in rows if r["legacy_id"] not in defects]
    return DedupeResult(kept, [(r["legacy_id"], r["legacy_id"], 1.0, "self") for r in kept],
                        quarantined=quarantined)


def dedupe_prescored(entity: str, ids: list[str], rules: DedupeRules, prescored: tuple,
                     rows_of: Callable[[list[int], Sequence[str] | None], dict[int, dict]],
                     labels: dict[str, str] | None = None, defects: dict[str, str] | None = None) -> DedupeResult:
    """dedupe_rows for a lot's partitioned dedupe: prescored is (scored pairs, pairs compared, model) of its
    prepare and score tasks (crm_migration.partitioned), the pairs' uids being positions in ids (the clean
    slice's legacy ids, sorted). rows_of(positions, columns or None for all) reads clean rows: only the
    must-agree fields of the rows in a pair and the whole rows of merged clusters are read; a row merged
    with none is listed in kept_as_is (same result as dedupe_rows, in the memory of ids and pairs)."""
    rules = effective_rules(entity, rules)
    defects = defects or {}
    if not rules.enabled or len(ids) < 2:
        res = _alone([{"legacy_id": lid} for lid in ids], defects)
        return DedupeResult([], res.merges, kept_as_is=[lid for lid in ids if lid not in defects],
                            quarantined=res.quarantined)
    pairs, compared, learned = prescored
    fields = rules.fields
    veto_cols = veto_columns(fields)
    values: dict[int, tuple] = {}
    if veto_cols:
        got = rows_of(sorted({k for p in pairs for k in (p.i, p.j)}), ["legacy_id", *veto_cols])
        values = dict(zip(got, compared_values(list(got.values()), fields), strict=True))
    scored = _not_vetoed(pairs, values, fields)
    del pairs, values
    return cluster_scored(entity, ids, scored, compared, rules.match_probability, rules.review_probability, rules,
                          learned, lambda wanted: rows_of(wanted, None), labels=labels, singleton_rows=False,
                          defects=defects)


def cluster_scored(entity: str, ids: list[str], scored: list, compared: int, threshold: float, review_floor: float,
                   rules: DedupeRules, learned: dict | None, rows_of: Callable[[list[int]], dict[int, dict]],
                   fixed: frozenset[str] = frozenset(), labels: dict[str, str] | None = None,
                   singleton_rows: bool = True, defects: dict[str, str] | None = None) -> DedupeResult:
    """Clusters from scored pairs (i, j, score, explain; i and j positions in ids, sorted): the strongest
    links first, oversized clusters split at their weakest links, a survivor per cluster. rows_of gives the
    clean rows at some positions: only a merged cluster's rows are asked for (and every row when
    singleton_rows; otherwise a row merged with none is left out of survivors and listed in kept_as_is, its
    clean row being its survivor as it is: the dedupe task of a million rows holds ids and pairs, not rows).
    defects: legacy id -> defect of the rows the cleanse let through incomplete (rules.cleanse.MATCHABLE): a
    cluster with a complete row is migrated (such a row never survives; the merge names its defect), a
    cluster of such rows only is quarantined with each row's defect.

    Long because the union-find, each row's best link and the review list are one pass's shared state; its
    parts that need none of it are helpers (_UnionFind, survivorship)."""
    labels = {**(labels or {}), **{lid: (labels or {}).get(lid, f"fixed:{lid}") for lid in fixed}}
    uf = _UnionFind(len(ids), {i: labels[lid] for i, lid in enumerate(ids) if lid in labels})
    best: dict[int, tuple[float, Callable[[], str]]] = {}
    edges: list[tuple[float, int, int]] = []
    review_idx: list[tuple[int, int, float, Callable[[], str]]] = []
    for i, j, score, why in sorted(scored, key=lambda p: (-p[2], p[0], p[1])):  # strongest links first
        if score >= threshold and uf.union(i, j):
            edges.append((score, i, j))
            for k in (i, j):
                if score > best.get(k, (-1.0, None))[0]:
                    best[k] = (score, why)
        elif score >= review_floor or score >= threshold:  # grey zone, or it would join two target records
            review_idx.append((i, j, score, why))
    clusters: dict[int, list[int]] = defaultdict(list)
    for i in range(len(ids)):
        clusters[uf.find(i)].append(i)
    by_root: dict[int, list[tuple[float, int, int]]] = defaultdict(list)
    for e in edges:
        by_root[uf.find(e[1])].append(e)
    all_groups: list[list[int]] = []
    oversized = 0
    for root, members in clusters.items():
        if len(members) > rules.max_cluster_size:  # a runaway chain: cut at its weakest links
            oversized += 1
            groups = split(members, by_root[root], rules.max_cluster_size)
            log.warning("%s: cluster of %d rows split at its weakest links into %d (max %d)", entity,
                        len(members), len(groups), rules.max_cluster_size)
        else:
            groups = [members]
        all_groups += groups
    del clusters
    rows = rows_of([m for g in all_groups for m in g] if singleton_rows
                   else [m for g in all_groups if len(g) > 1 for m in g])
    all_groups, cut = without_contradictions(entity, all_groups, by_root, uf.find, rows, rules)
    review_idx += cut
    del by_root, edges
    survivors, merges, kept_as_is, quarantined = [], [], [], []
    defects = defects or {}
    for group in all_groups:
        if defects and all(ids[m] in defects and ids[m] not in fixed for m in group):
            twins = f" (merged only with rows as incomplete: {', '.join(ids[m] for m in group[:5])})" \
                if len(group) > 1 else ""
            quarantined += [defect_entry(ids[m], defects[ids[m]], UNMATCHED + twins) for m in group]
            continue
        if len(group) == 1 and not singleton_rows:
            kept_as_is.append(ids[group[0]])
            merges.append((ids[group[0]], ids[group[0]], 1.0, "self"))
            continue
        anchor = [rows[m] for m in group if ids[m] in fixed]
        survivor = anchor[0] if anchor else survive([rows[m] for m in group], rules)
        survivors.append(survivor)
        s_idx = next(m for m in group if ids[m] == survivor["legacy_id"])
        for m in group:
            if m == s_idx:
                merges.append((ids[m], survivor["legacy_id"], 1.0, "self"))
            else:
                score, why = best.get(m, (0.0, None))
                rule = why() if why else "weak"
                if ids[m] in defects:  # mended by its complete twin: say what the survivor filled
                    rule = f"{rule}; incomplete, filled by the survivor: {defects[ids[m]]}"[:1000]
                merges.append((ids[m], survivor["legacy_id"], score, rule))
    merged_into = {lid: s for lid, s, _, _ in merges}
    review = sorted({(ids[i], ids[j], score, why())
                     for i, j, score, why in review_idx
                     if merged_into.get(ids[i], ids[i]) != merged_into.get(ids[j], ids[j])},
                    key=lambda r: (-r[2], r[0], r[1]))
    survivors.sort(key=lambda r: r["legacy_id"])
    merges.sort()
    if quarantined:
        log.info("%s: %d incomplete rows merged into no complete record: quarantined (first: %s)", entity,
                 len(quarantined), "; ".join(f"{lid} {code}" for lid, code, _ in quarantined[:3]))
    return DedupeResult(survivors, merges, review, compared, oversized, learned, sorted(kept_as_is),
                        sorted(quarantined))


def _min_rows_to_learn() -> int:
    from crm_migration.matching.linkage import MIN_ROWS_TO_LEARN

    return MIN_ROWS_TO_LEARN
