"""Transform: map deduplicated rows to the new CRM model.

Picklists go through the lot's value maps (an unmapped value is quarantined with the
value named, never silently nulled); foreign keys are remapped through the crosswalk.
New ids are UUIDv5 of (entity, legacy id): a rerun or a rebuild gives the same ids.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

from crm_migration.model.config import EntityConfig
from crm_migration.model.spec import EntitySpec, PerEntity, spec, target_schema

NAMESPACE = uuid.UUID("6b1e6d3c-5f0a-4c59-9a8e-2f5d0c7e4a11")
UNMAPPED_VALUE = "UNMAPPED_VALUE"
FK_ORPHAN = "FK_ORPHAN"
# Derived from config/entities/<entity>.yaml (read at each use: tests switch configurations)
TARGET_TABLE = PerEntity(lambda es: f"{target_schema()}.{es.target.table}")
TARGET_COLUMNS = PerEntity(lambda es: es.target_columns)
# The target column holding the legacy modification time: an older version never replaces a newer one.
MODIFIED_COLUMN = PerEntity(lambda es: es.modified_column)
# Foreign keys: (column in the clean row, parent entity, column in the target row)
FOREIGN_KEYS = PerEntity(lambda es: tuple(r for r in es.references if r[2]))


def new_id(entity: str, legacy_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{entity}:{legacy_id}")


class _Reject(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


def _mapped(cfg: EntityConfig, fieldname: str, value: str | None) -> str | None:
    """Apply the value map of fieldname, if the lot has one."""
    vmap = cfg.value_maps.get(fieldname)
    if vmap is None or value is None:
        return value
    if value not in vmap:
        raise _Reject(UNMAPPED_VALUE, f"{fieldname}={value!r} has no entry in value_maps.{fieldname}")
    return vmap[value]


def _reference(r: dict, name: str, f, cfg: EntityConfig, crosswalk: dict, defaulted: Counter):  # noqa: ANN001
    """(new id, parent entity) of a reference field of a clean row; a default stands in for an empty or
    unknown reference (counted); an unknown one is quarantined (FK_ORPHAN) unless the lot says null."""
    legacy_fk = r.get(name)
    if f.entities is not None:
        kind = r.get(f"{name}_type")
        parent = f.entities.get(kind) if kind else None
        if legacy_fk is not None and parent is None:
            if cfg.on_orphan_fk == "quarantine":
                raise _Reject(FK_ORPHAN, f"{name}: parent type {kind!r} is none of {sorted(f.entities)}")
            return None, None
    else:
        parent = f.entity
    mapped = crosswalk.get(parent, {}).get(legacy_fk) if legacy_fk is not None else None
    if mapped is None and f.default is not None:
        mapped = crosswalk.get(parent, {}).get(f.default)
        if mapped is not None:
            defaulted[name] += 1
            return mapped, parent
    if mapped is None and legacy_fk is not None and f.on_missing == "lot" and cfg.on_orphan_fk == "quarantine":
        raise _Reject(FK_ORPHAN, f"{name}={legacy_fk!r} not found in the {parent} crosswalk")
    return mapped, (parent if mapped is not None else None)


def map_row(r: dict, es: EntitySpec, cfg: EntityConfig, crosswalk: dict, defaulted: Counter) -> dict:
    """A clean row in the target's shape: each field with a target column, picklists through the lot's
    value maps, references through the crosswalk."""
    row = {"id": new_id(es.entity, r["legacy_id"]), "legacy_id": r["legacy_id"]}
    links = {}
    for name, f in es.fields.items():
        if f.kind == "reference":
            mapped, parent = _reference(r, name, f, cfg, crosswalk, defaulted)
            if f.to:
                row[f.to] = mapped
                # the legacy parent the reference should point at, resolved again by the checks and relink
                links[f.to] = [f.entity if f.entities is None else f.entities.get(r.get(f"{name}_type") or ""),
                               r.get(name), f.default]
            if f.type_to:
                row[f.type_to] = parent
        elif f.to:
            row[f.to] = _mapped(cfg, name, r.get(name))
    row["links"] = links
    return row


@dataclass
class TransformResult:
    rows: list[dict] = field(default_factory=list)
    quarantined: list[tuple[str, str, str, dict]] = field(default_factory=list)
    defaulted: dict[str, int] = field(default_factory=dict)  # reference field -> rows given its default


def transform_rows(
    entity: str, rows: list[dict], cfg: EntityConfig, crosswalk: dict[str, dict[str, uuid.UUID]],
    ids: dict[str, uuid.UUID] | None = None,
) -> TransformResult:
    """crosswalk: parent entity -> legacy id -> new id (merged ids point at their survivor).
    ids: survivor legacy id -> target id of its cluster (the dedupe's; default uuid5 of the legacy id)."""
    out = TransformResult()
    es = spec(entity)
    defaulted: Counter = Counter()
    for r in rows:
        try:
            row = map_row(r, es, cfg, crosswalk, defaulted)
            if ids and r["legacy_id"] in ids:
                row["id"] = ids[r["legacy_id"]]
            for column, value in cfg.defaults.items():
                if row.get(column) in (None, ""):
                    row[column] = value
            out.rows.append(row)
        except _Reject as rej:
            out.quarantined.append((r["legacy_id"], rej.code, rej.detail, r))
    out.defaulted = dict(defaulted)
    return out
