"""Stable identity of a merged customer: the target id follows the cluster, not its survivor row.

A cluster found by the dedupe keeps the target id its rows already map to (``labels``: the crosswalk),
whichever member survives today:

- ``same``: the row that holds the target record survives again;
- ``flipped``: another member survives (edited, more complete): the target row and the crosswalk are
  updated in place, never a second target row;
- ``taken_over``: the holder was deleted, excluded or quarantined, or is gone from the legacy CRM, while
  other members are active: the next member holds the record, its values re-derived by the rules;
- ``rederived`` (delta): a member changed and the values were derived again from every member;
- ``split``: the rows no longer match: the part holding the record keeps the id, the rest gets a new one;
- ``joined``: (lot run) rows matching a record whose holder is outside the run merge into it;
- ``new``: a cluster the target has never seen, id uuid5(entity, survivor legacy id) (or a variant
  when that id is taken).

Two clusters already holding different target ids are never merged (``dedupe._UnionFind``): the pair
goes to the review list.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

import sqlalchemy as sa

from crm_migration.rules.transform import NAMESPACE, TARGET_TABLE, new_id

EVENTS = ("new", "same", "flipped", "taken_over", "rederived", "split", "joined")


@dataclass
class Cluster:
    survivor: str
    members: list[str]
    cluster_id: str
    event: str
    previous_holder: str | None = None

    def row(self) -> tuple:
        return (self.cluster_id, self.survivor, self.event, self.previous_holder, len(self.members))


COLUMNS = ("cluster_id", "survivor_legacy_id", "event", "previous_holder", "members")


def labels_of(conn: sa.Connection, entity: str, ids: list[str]) -> dict[str, str]:
    """legacy id -> target id it maps to today (its own target row, or the survivor's when merged)."""
    if not ids:
        return {}
    return {lid: str(cid) for lid, cid in conn.execute(sa.text(
        "SELECT legacy_id, new_id FROM crm_migration.crosswalk WHERE entity = :e AND legacy_id = ANY(:ids)"),
        {"e": entity, "ids": ids})}


def holders_of(conn: sa.Connection, entity: str, cluster_ids: set[str]) -> dict[str, str]:
    """target id -> legacy id of the row holding it in the target."""
    if not cluster_ids:
        return {}
    return {str(cid): lid for cid, lid in conn.execute(sa.text(
        f"SELECT id, legacy_id FROM {TARGET_TABLE[entity]} WHERE id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": sorted(cluster_ids)})}


def fresh_ids(conn: sa.Connection, entity: str, survivors: list[str], taken: set[str]) -> dict[str, str]:
    """A new target id per survivor: uuid5(entity, legacy id) as always, or a deterministic variant when
    that id is held by another cluster (its row once survived there) or given out in this run."""
    wanted = {s: str(new_id(entity, s)) for s in survivors}
    used = set(taken)
    if wanted:
        used |= {str(r[0]) for r in conn.execute(sa.text(
            "SELECT new_id FROM crm_migration.crosswalk WHERE entity = :e AND new_id = ANY(CAST(:ids AS uuid[]))"),
            {"e": entity, "ids": sorted(set(wanted.values()))})}
    out = {}
    for s in sorted(survivors):
        cid, k = wanted[s], 0
        while cid in used:
            k += 1
            cid = str(uuid.uuid5(NAMESPACE, f"{entity}:{s}:{k}"))
        used.add(cid)
        out[s] = cid
    return out


def resolve_lot(conn: sa.Connection, entity: str, merges: list[tuple], labels: dict[str, str], seen: set[str]
                ) -> tuple[list[Cluster], dict[str, str]]:
    """Target ids of a lot run's clusters. merges: (legacy_id, survivor, score, rule) of every clean row.

    Returns the clusters and ``joined``: survivor -> holder for clusters that merge into a record whose
    holder is outside this run (the caller re-points their merges and does not stage them).
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for lid, survivor, _, _ in merges:
        groups[survivor].append(lid)
    by_label: dict[str, list[str]] = defaultdict(list)
    for survivor, members in groups.items():
        found = {labels[m] for m in members if m in labels}
        if len(found) > 1:  # dedupe never joins two labels; a stale label is not worth a crash
            found = {min(found)}
        if found:
            by_label[found.pop()].append(survivor)
    holders = holders_of(conn, entity, set(by_label))
    clusters: list[Cluster] = []
    joined: dict[str, str] = {}
    need_new: list[str] = []
    for cid, survivors in sorted(by_label.items()):
        holder = holders.get(cid)
        keeper = next((s for s in survivors if holder in groups[s]), None)
        if keeper is None and holder is not None and holder not in seen:
            for s in survivors:  # the record's holder lives outside this run (another lot, a sample)
                joined[s] = holder
                clusters.append(Cluster(holder, groups[s], cid, "joined", holder))
            continue
        if keeper is None:
            keeper = min(survivors)
            event = "taken_over"
        else:
            event = "same" if keeper == holder else "flipped"
        clusters.append(Cluster(keeper, groups[keeper], cid, event, holder))
        need_new += [s for s in survivors if s != keeper]
    labelled = {s for ss in by_label.values() for s in ss}
    need_new += [s for s in groups if s not in labelled]
    split = set(need_new) & labelled
    ids = fresh_ids(conn, entity, need_new, set(by_label))
    clusters += [Cluster(s, groups[s], ids[s], "split" if s in split else "new") for s in need_new]
    return sorted(clusters, key=lambda c: c.survivor), joined


def counts(clusters: list[Cluster]) -> dict[str, int]:
    out = dict.fromkeys(EVENTS, 0)
    for c in clusters:
        out[c.event] += 1
    return out
