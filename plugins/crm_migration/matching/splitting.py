"""Clusters that must not hold what they hold: vetoes (fields two rows must not clearly disagree on), a
runaway chain cut to size, and clusters whose members contradict each other split at their weakest links.
Used by crm_migration.matching.dedupe."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import combinations

from crm_migration.matching.similarity import AGREE, COMPARATORS, compared_values
from crm_migration.model.config import DedupeRules

log = logging.getLogger(__name__)


class Vetoes:
    """The fields two rows must not clearly disagree on (similarity < AGREE, both present): must_agree ones
    (and one_per_cluster ones within a cluster), unless their must_agree_unless field is the same -- equal, or
    one value's words all in the other's (Spago / Spago Los Angeles at two addresses is one restaurant;
    Havas Voyages Opéra / Havas Voyages Bastille, Jaro-Winkler 0.90, are two sites). Values are
    compared_values tuples of every field."""

    def __init__(self, fields: Sequence, cluster: bool = False):
        at = {f.field: k for k, f in enumerate(fields)}
        self.checks = [(k, f.field, COMPARATORS[f.compare], at.get(f.must_agree_unless))
                       for k, f in enumerate(fields) if f.must_agree or (cluster and f.one_per_cluster)]

    def __bool__(self) -> bool:
        return bool(self.checks)

    def first(self, a: Sequence[str], b: Sequence[str]) -> str | None:
        """The first field a and b clearly disagree on, or None."""
        for k, name, cmp, u in self.checks:
            if a[k] and b[k] and cmp(a[k], b[k]) < AGREE and not (u is not None and _same_words(a[u], b[u])):
                return name
        return None


def _same_words(x: str, y: str) -> bool:
    wx, wy = set(x.split()), set(y.split())
    return bool(wx and wy) and (wx <= wy or wy <= wx)


def veto_columns(fields: Sequence) -> list[str]:
    """The fields a veto reads: must_agree ones and the fields that may excuse them."""
    return sorted({f.field for f in fields if f.must_agree} | {f.must_agree_unless for f in fields
                                                                if f.must_agree and f.must_agree_unless})


def split(members: list[int], edges: list[tuple[float, int, int]], limit: int) -> list[list[int]]:
    """A cluster larger than limit, split at its weakest links: links are applied strongest first, one
    strength at a time; the links of a strength that would make a group larger than limit are left out
    (the groups they would join stay apart). A runaway chain thus becomes its strongly linked parts; rows
    linked only by equally strong links (thirty identical rows behind one shared e-mail) have no weakest
    link to cut and stay unmerged."""
    index = {m: k for k, m in enumerate(members)}
    parent = list(range(len(members)))

    def find(x: int, p: list[int]) -> int:
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    by_strength: dict[float, list[tuple[int, int]]] = defaultdict(list)
    for score, i, j in edges:
        by_strength[score].append((index[i], index[j]))
    for score in sorted(by_strength, reverse=True):
        trial = list(parent)
        for a, b in by_strength[score]:
            ra, rb = find(a, trial), find(b, trial)
            if ra != rb:
                trial[max(ra, rb)] = min(ra, rb)
        size: dict[int, int] = defaultdict(int)
        for x in range(len(members)):
            size[find(x, trial)] += 1
        for a, b in by_strength[score]:
            if size[find(a, trial)] <= limit:
                ra, rb = find(a, parent), find(b, parent)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for m in members:
        groups[find(index[m], parent)].append(m)
    return list(groups.values())


def without_contradictions(entity: str, groups: list[list[int]], by_root: dict, find: Callable[[int], int],
                            rows: dict[int, dict], rules: DedupeRules) -> tuple[list[list[int]], list[tuple]]:
    """Clusters whose members contradict each other on a must_agree or one_per_cluster field (two birth
    dates, two house numbers, two e-mails: present in both rows and clearly different) -- namesakes chained
    through rows that agree with each -- are rebuilt from their links strongest first, leaving out a link
    that would put two contradicting rows together: the cluster splits at its weakest links. Returns the
    groups and the links left out, for the review list, each with the field that cut it."""
    checks = Vetoes(rules.fields or (), cluster=True)
    if not checks:
        return groups, []
    out, cut = [], []
    for group in groups:
        if len(group) < 3:  # a pair that contradicts was vetoed before it linked
            out.append(group)
            continue
        values = dict(zip(group, compared_values([rows[m] for m in group], rules.fields), strict=True))

        def contradiction(a: int, b: int) -> str | None:
            return checks.first(values[a], values[b])  # noqa: B023 - used within this iteration

        if not any(contradiction(a, b) for a, b in combinations(group, 2)):
            out.append(group)
            continue
        members = set(group)
        links = sorted((e for e in by_root[find(group[0])] if e[1] in members and e[2] in members),
                       key=lambda e: (-e[0], e[1], e[2]))
        part = {m: [m] for m in group}
        for score, i, j in links:
            pi, pj = part[i], part[j]
            if pi is pj:
                continue
            why = next((w for a in pi for b in pj if (w := contradiction(a, b))), None)
            if why:
                cut.append((i, j, score, lambda why=why: f"cut from its cluster: {why} contradicts"))
                continue
            pi += pj
            for m in pj:
                part[m] = pi
        parts = list({id(p): p for p in part.values()}.values())
        log.warning("%s: a cluster of %d rows whose members contradict each other split at its weakest links"
                    " into %d", entity, len(group), len(parts))
        out += [sorted(p) for p in parts]
    return out, cut
