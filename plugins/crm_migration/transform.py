"""Transform: map deduplicated rows to the new CRM model.

Picklists go through the lot's value maps (an unmapped value is quarantined with the
value named, never silently nulled); foreign keys are remapped through the crosswalk.
New ids are UUIDv5 of (entity, legacy id): a rerun or a rebuild gives the same ids.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

from crm_migration.config import EntityConfig

NAMESPACE = uuid.UUID("6b1e6d3c-5f0a-4c59-9a8e-2f5d0c7e4a11")
UNMAPPED_VALUE = "UNMAPPED_VALUE"
FK_ORPHAN = "FK_ORPHAN"
TARGET_TABLE = {"accounts": "crm.companies", "contacts": "crm.people", "opportunities": "crm.opportunities"}
TARGET_COLUMNS = {
    "accounts": ("id", "legacy_id", "name", "domain", "phone", "address_street", "address_city",
                 "address_postal_code", "address_country", "industry", "company_type", "created_at", "updated_at"),
    "contacts": ("id", "legacy_id", "first_name", "last_name", "email", "phone", "mobile", "job_title", "city",
                 "country", "lead_source", "company_id", "created_at", "updated_at"),
    "opportunities": ("id", "legacy_id", "name", "amount", "currency", "stage", "probability", "close_date",
                      "company_id", "person_id", "created_at", "updated_at"),
}
# The target column holding the legacy modification time: an older version never replaces a newer one.
MODIFIED_COLUMN = "updated_at"
# Foreign keys: (column in the clean row, parent entity, column in the target row)
FOREIGN_KEYS = {
    "accounts": (),
    "contacts": (("account_legacy_id", "accounts", "company_id"),),
    "opportunities": (("account_legacy_id", "accounts", "company_id"), ("contact_legacy_id", "contacts", "person_id")),
}


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


def _accounts(r: dict, cfg: EntityConfig, fks: dict) -> dict:
    return {
        "id": new_id("accounts", r["legacy_id"]), "legacy_id": r["legacy_id"], "name": r["name"],
        "domain": r["domain"], "phone": r["phone"], "address_street": r["street"], "address_city": r["city"],
        "address_postal_code": r["postal_code"], "address_country": r["country_code"],
        "industry": _mapped(cfg, "industry", r["industry"]),
        "company_type": _mapped(cfg, "account_type", r["account_type"]),
        "created_at": r["created_at"], "updated_at": r["modified_at"],
    }


def _contacts(r: dict, cfg: EntityConfig, fks: dict) -> dict:
    return {
        "id": new_id("contacts", r["legacy_id"]), "legacy_id": r["legacy_id"], "first_name": r["first_name"],
        "last_name": r["last_name"], "email": r["email"], "phone": r["phone"], "mobile": r["mobile"],
        "job_title": r["job_title"], "city": r["city"], "country": r["country_code"],
        "lead_source": _mapped(cfg, "lead_source", r["lead_source"]), "company_id": fks.get("company_id"),
        "created_at": r["created_at"], "updated_at": r["modified_at"],
    }


def _opportunities(r: dict, cfg: EntityConfig, fks: dict) -> dict:
    return {
        "id": new_id("opportunities", r["legacy_id"]), "legacy_id": r["legacy_id"], "name": r["name"],
        "amount": r["amount"], "currency": _mapped(cfg, "currency", r["currency"]),
        "stage": _mapped(cfg, "sales_stage", r["sales_stage"]), "probability": r["probability"],
        "close_date": r["close_date"], "company_id": fks.get("company_id"), "person_id": fks.get("person_id"),
        "created_at": r["created_at"], "updated_at": r["modified_at"],
    }


MAPPERS: dict[str, Callable[[dict, EntityConfig, dict], dict]] = {
    "accounts": _accounts, "contacts": _contacts, "opportunities": _opportunities,
}


@dataclass
class TransformResult:
    rows: list[dict] = field(default_factory=list)
    quarantined: list[tuple[str, str, str, dict]] = field(default_factory=list)


def transform_rows(
    entity: str, rows: list[dict], cfg: EntityConfig, crosswalk: dict[str, dict[str, uuid.UUID]],
    ids: dict[str, uuid.UUID] | None = None,
) -> TransformResult:
    """crosswalk: parent entity -> legacy id -> new id (merged ids point at their survivor).
    ids: survivor legacy id -> target id of its cluster (the dedupe's; default uuid5 of the legacy id)."""
    out = TransformResult()
    for r in rows:
        try:
            fks = {}
            for col, parent, target_col in FOREIGN_KEYS[entity]:
                legacy_fk = r.get(col)
                if legacy_fk is None:
                    continue
                mapped = crosswalk.get(parent, {}).get(legacy_fk)
                if mapped is None and cfg.on_orphan_fk == "quarantine":
                    raise _Reject(FK_ORPHAN, f"{col}={legacy_fk!r} not found in the {parent} crosswalk")
                fks[target_col] = mapped
            row = MAPPERS[entity](r, cfg, fks)
            if ids and r["legacy_id"] in ids:
                row["id"] = ids[r["legacy_id"]]
            for column, value in cfg.defaults.items():
                if row.get(column) in (None, ""):
                    row[column] = value
            out.rows.append(row)
        except _Reject as rej:
            out.quarantined.append((r["legacy_id"], rej.code, rej.detail, r))
    return out
