"""Survivorship: one record from a cluster of rows that are one customer. The survivor row is picked by
the lot's rule (most recent, most complete, oldest; ties by legacy id, so the result never depends on row
order), its gaps are filled from the others in that order, and per-field rules (most recent, most
complete, longest, earliest value) override it. created_at takes the earliest value unless a lot says
otherwise."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, UTC

from crm_migration.model.config import DedupeRules

_EPOCH = datetime.min.replace(tzinfo=UTC)
DEFAULT_SURVIVORSHIP: dict[str, str] = {"created_at": "earliest"}


def _completeness(r: dict) -> int:
    return sum(v not in (None, "") for v in r.values())


def _modified(r: dict) -> datetime:
    return r.get("modified_at") or _EPOCH


_SURVIVOR_ORDER: dict[str, Callable[[dict], tuple]] = {
    "most_recent": lambda r: (-_modified(r).timestamp(), -_completeness(r), r["legacy_id"]),
    "most_complete": lambda r: (-_completeness(r), -_modified(r).timestamp(), r["legacy_id"]),
    "oldest": lambda r: (_modified(r).timestamp(), -_completeness(r), r["legacy_id"]),
}


def _pick(members: list[dict], fieldname: str, rule: str) -> object:
    values = [m for m in members if m.get(fieldname) not in (None, "")]
    if not values:
        return None
    if rule == "most_recent":
        return max(values, key=lambda m: (_modified(m), m["legacy_id"]))[fieldname]
    if rule == "earliest":
        return min(values, key=lambda m: (m[fieldname], m["legacy_id"]))[fieldname]
    if rule == "longest":
        return max(values, key=lambda m: (len(str(m[fieldname])), m["legacy_id"]))[fieldname]
    return max(values, key=lambda m: (_completeness(m), m["legacy_id"]))[fieldname]  # most_complete


def survive(members: list[dict], rules: DedupeRules) -> dict:
    """One record from a cluster: the survivor row, per-field rules, gaps filled in survivor order."""
    order = _SURVIVOR_ORDER[rules.survivor]
    # a row with a defect (rules.cleanse.MATCHABLE: a required value missing, a broken e-mail) never survives
    # a complete one; its other values still fill the survivor's gaps
    ordered = sorted(members, key=lambda r: (bool(r.get("defect")), *order(r)))
    survivor = dict(ordered[0])
    for other in ordered[1:]:
        for k, v in other.items():
            if k != "defect" and survivor.get(k) in (None, "") and v not in (None, ""):
                survivor[k] = v
    if len(members) > 1:
        for fieldname, rule in {**DEFAULT_SURVIVORSHIP, **rules.survivorship}.items():
            if fieldname in survivor:
                survivor[fieldname] = _pick(members, fieldname, rule)
    survivor["legacy_id"] = ordered[0]["legacy_id"]
    return survivor
