"""Dedupe: blocking, jellyfish pair scoring, transitive clusters, one survivor each.

Deterministic: rows are sorted by legacy id before anything else, so the same input
gives the same clusters and survivors whatever the row order.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import combinations
from typing import Callable, Iterable

import jellyfish

from crm_migration.config import DedupeRules

log = logging.getLogger(__name__)
MAX_BLOCK = 500  # a block larger than this is compared in sorted windows, not all pairs
WINDOW = 20
_LEGAL = re.compile(
    r"\b(inc|ltd|llc|plc|gmbh|ag|kg|co|sa|sas|sarl|sl|s\.?a\.?t|s\.?l|s\.?coop|e\.?v|und|and|et|y|fils|cie|& ?co)\b\.?"
)


def fold(s: str | None) -> str:
    """Lower case, accents stripped, punctuation to spaces."""
    if not s:
        return ""
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", " ", s).strip()


def company_key(name: str | None) -> str:
    return re.sub(r"\s+", " ", _LEGAL.sub(" ", fold(name))).strip()


def _digits(s: str | None) -> str:
    return re.sub(r"\D", "", s or "")


# --- per-entity blocking keys and pair scores -------------------------------------------------

def _account_blocks(r: dict) -> Iterable[str]:
    key = company_key(r.get("name"))
    if key:
        first = key.split(" ")[0]
        yield "n:" + jellyfish.metaphone(first)[:6] + ":" + (r.get("country_code") or "")
    if r.get("domain"):
        yield "d:" + r["domain"]
    if len(_digits(r.get("phone"))) >= 8:
        yield "p:" + _digits(r.get("phone"))


def _account_score(a: dict, b: dict) -> tuple[float, str]:
    name = jellyfish.jaro_winkler_similarity(company_key(a.get("name")), company_key(b.get("name")))
    same_place = bool(a.get("postal_code")) and a.get("postal_code") == b.get("postal_code")
    same_domain = bool(a.get("domain")) and a.get("domain") == b.get("domain")
    if same_domain and name >= 0.8:
        return max(name, 0.97), "name+domain"
    if same_place:
        return min(1.0, name + 0.04), "name+postal_code"
    return name - 0.05, "name_only"


def _contact_blocks(r: dict) -> Iterable[str]:
    if r.get("email"):
        yield "e:" + r["email"]
    last = fold(r.get("last_name"))
    first = fold(r.get("first_name"))
    if last:
        yield "s:" + jellyfish.soundex(last) + ":" + first[:1]
        yield "f:" + jellyfish.soundex(first or "_") + ":" + last[:1]


def _contact_score(a: dict, b: dict) -> tuple[float, str]:
    last = jellyfish.jaro_winkler_similarity(fold(a.get("last_name")), fold(b.get("last_name")))
    first = jellyfish.jaro_winkler_similarity(fold(a.get("first_name")), fold(b.get("first_name")))
    name = 0.55 * last + 0.45 * first
    if a.get("email") and a.get("email") == b.get("email"):
        return (max(name, 0.95) if name >= 0.75 else name), "email+name"
    if a.get("account_legacy_id") and a.get("account_legacy_id") == b.get("account_legacy_id"):
        return min(1.0, name + 0.03), "name+account"
    if a.get("email") and b.get("email"):
        return name - 0.1, "name_diff_email"
    return name - 0.05, "name_only"


BLOCKERS: dict[str, Callable[[dict], Iterable[str]]] = {"accounts": _account_blocks, "contacts": _contact_blocks}
SCORERS: dict[str, Callable[[dict, dict], tuple[float, str]]] = {
    "accounts": _account_score,
    "contacts": _contact_score,
}


@dataclass
class DedupeResult:
    survivors: list[dict]
    merges: list[tuple[str, str, float, str]]  # legacy_id, survivor_legacy_id, score, rule
    pairs_compared: int
    oversized_clusters: int


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def _candidate_pairs(rows: list[dict], blocker: Callable[[dict], Iterable[str]]) -> set[tuple[int, int]]:
    blocks: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        for key in set(blocker(r)):
            blocks[key].append(i)
    pairs: set[tuple[int, int]] = set()
    for members in blocks.values():
        if len(members) <= MAX_BLOCK:
            pairs.update(combinations(members, 2))
        else:
            for k, i in enumerate(members):
                pairs.update((i, j) for j in members[k + 1:k + 1 + WINDOW])
    return pairs


def _completeness(r: dict) -> int:
    return sum(v is not None and v != "" for v in r.values())


def _survivor_order(r: dict) -> tuple:
    # most recently modified first, then most complete, then smallest legacy id
    modified = r.get("modified_at") or datetime.min.replace(tzinfo=timezone.utc)
    return (-modified.timestamp(), -_completeness(r), r["legacy_id"])


def dedupe_rows(entity: str, rows: list[dict], rules: DedupeRules) -> DedupeResult:
    rows = sorted(rows, key=lambda r: r["legacy_id"])
    if not rules.enabled or len(rows) < 2:
        return DedupeResult(rows, [(r["legacy_id"], r["legacy_id"], 1.0, "self") for r in rows], 0, 0)
    scorer = SCORERS[entity]
    pairs = sorted(_candidate_pairs(rows, BLOCKERS[entity]))
    uf = _UnionFind(len(rows))
    best: dict[int, tuple[float, str]] = {}
    for i, j in pairs:
        score, rule = scorer(rows[i], rows[j])
        if score >= rules.threshold:
            uf.union(i, j)
            for k in (i, j):
                if score > best.get(k, (0.0, ""))[0]:
                    best[k] = (round(score, 4), rule)
    clusters: dict[int, list[int]] = defaultdict(list)
    for i in range(len(rows)):
        clusters[uf.find(i)].append(i)
    survivors, merges, oversized = [], [], 0
    for members in clusters.values():
        if len(members) > rules.max_cluster_size:  # a runaway chain: keep every row, merge none
            oversized += 1
            log.warning("%s: cluster of %d rows left unmerged (max %d)", entity, len(members), rules.max_cluster_size)
            groups = [[m] for m in members]
        else:
            groups = [members]
        for group in groups:
            ordered = sorted((rows[m] for m in group), key=_survivor_order)
            survivor = dict(ordered[0])
            for other in ordered[1:]:  # fill the survivor's gaps from the next most recent rows
                for k, v in other.items():
                    if survivor.get(k) in (None, "") and v not in (None, ""):
                        survivor[k] = v
            survivors.append(survivor)
            merges.append((survivor["legacy_id"], survivor["legacy_id"], 1.0, "self"))
            for other in ordered[1:]:
                i = next(m for m in group if rows[m] is other)
                score, rule = best.get(i, (0.0, "transitive"))
                merges.append((other["legacy_id"], survivor["legacy_id"], score, rule))
    survivors.sort(key=lambda r: r["legacy_id"])
    merges.sort()
    return DedupeResult(survivors, merges, len(pairs), oversized)
