"""What data owners decide without touching the legacy CRM, each decision with its reason and who took it:

- **corrections** (``corrections_file``, CSV: entity, legacy_id, field, value, reason, who): the value a
  field of one legacy row should have. Applied to the extracted row before the cleanse, so the value
  still goes through the field's rule (a corrected e-mail is validated). Every correction applied is
  recorded by run (``crm_migration.correction_applied``) and counted in the report.
- **waivers** (``waivers_file``, CSV: entity, legacy_id, reason_code, reason, approver): a quarantined row
  accepted as not migrated -- one row (legacy_id), or every row of the entity quarantined for one reason
  (reason_code, e.g. ``cleanse:DATE_OUT_OF_RANGE``). The freeze counts a waived row as accounted for
  (``waived``) and lists the waivers it relied on.

Both files are relative to the config directory (``CRM_CORRECTIONS_FILE`` / ``CRM_WAIVERS_FILE`` name
others: the demo's); a missing file is an empty one. A bad line fails the run
naming the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

from crm_migration.model.settings import config_dir, load_migration_config
from crm_migration.model.db import sql
from crm_migration.model.masking import mask_id, mask_value, scrub
from crm_migration.model.spec import specs
from crm_migration.rules.cleanse import MATCHABLE

CORRECTION_COLUMNS = ("entity", "legacy_id", "field", "value", "reason", "who")
WAIVER_COLUMNS = ("entity", "legacy_id", "reason_code", "reason", "approver")


class DataOwnerFileError(ValueError):
    """A corrections or waivers file with a line that cannot be applied."""


@dataclass(frozen=True)
class Correction:
    entity: str
    legacy_id: str
    field: str
    value: str | None
    reason: str
    who: str


@dataclass(frozen=True)
class Waiver:
    entity: str
    legacy_id: str | None
    reason_code: str | None
    reason: str
    approver: str


def _path(name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else config_dir() / p


def _rows(path: Path, columns: tuple[str, ...]) -> Iterable[tuple[int, dict]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DataOwnerFileError(f"{path}: line 1: the header lacks {missing} (columns: {', '.join(columns)})")
        for row in reader:
            if any((v or "").strip() for v in row.values()):
                yield reader.line_num, {**{c: (row.get(c) or "").strip() for c in columns},
                                        "value_raw": row.get("value")}


@lru_cache(maxsize=8)
def _corrections(path: str, stamp: int) -> tuple[Correction, ...]:  # stamp: a changed file is read again
    out, seen = [], set()
    all_specs = specs()
    for line, r in _rows(Path(path), CORRECTION_COLUMNS):
        where = f"{path}: line {line}"
        if r["entity"] not in all_specs:
            raise DataOwnerFileError(f"{where}: entity {r['entity']!r} is none of {sorted(all_specs)}")
        fields = all_specs[r["entity"]].fields
        if r["field"] not in fields or fields[r["field"]].kind == "reference" and fields[r["field"]].through:
            raise DataOwnerFileError(f"{where}: field {r['field']!r} is no field of {r['entity']}"
                                     f" (config/entities): {sorted(fields)}")
        for need in ("legacy_id", "reason", "who"):
            if not r[need]:
                raise DataOwnerFileError(f"{where}: {need} is empty: every correction names its row, why and who")
        if (r["entity"], r["legacy_id"], r["field"]) in seen:
            raise DataOwnerFileError(f"{where}: {r['entity']} {r['legacy_id']} {r['field']} is corrected twice")
        seen.add((r["entity"], r["legacy_id"], r["field"]))
        value = r["value_raw"] if r["value_raw"] not in (None, "") else None  # an empty value empties the field
        out.append(Correction(r["entity"], r["legacy_id"], r["field"], value, r["reason"], r["who"]))
    return tuple(out)


@lru_cache(maxsize=8)
def _waivers(path: str, stamp: int) -> tuple[Waiver, ...]:
    out = []
    all_specs = specs()
    for line, r in _rows(Path(path), WAIVER_COLUMNS):
        where = f"{path}: line {line}"
        if r["entity"] not in all_specs:
            raise DataOwnerFileError(f"{where}: entity {r['entity']!r} is none of {sorted(all_specs)}")
        if bool(r["legacy_id"]) == bool(r["reason_code"]):
            raise DataOwnerFileError(f"{where}: give a legacy_id (one row) or a reason_code (every row quarantined"
                                     " for it, e.g. cleanse:DATE_OUT_OF_RANGE), not both")
        if r["reason_code"] and ":" not in r["reason_code"]:
            raise DataOwnerFileError(f"{where}: reason_code {r['reason_code']!r} is stage:CODE, as the report"
                                     " lists it (e.g. cleanse:EMAIL_INVALID)")
        for need in ("reason", "approver"):
            if not r[need]:
                raise DataOwnerFileError(f"{where}: {need} is empty: a waiver says why and who approved it")
        out.append(Waiver(r["entity"], r["legacy_id"] or None, r["reason_code"] or None, r["reason"], r["approver"]))
        stage, _, code = (r["reason_code"] or "").partition(":")
        if stage in ("cleanse", "dedupe") and code in MATCHABLE:  # found by the cleanse, decided by the dedupe
            other = f"{'dedupe' if stage == 'cleanse' else 'cleanse'}:{code}"  # of an entity that deduplicates
            out.append(Waiver(r["entity"], None, other, r["reason"], r["approver"]))
    return tuple(out)


def _stamp(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def corrections(entity: str) -> dict[str, list[Correction]]:
    """legacy id -> the corrections of that row of the entity."""
    path = _path(os.environ.get("CRM_CORRECTIONS_FILE") or load_migration_config().corrections_file)
    out: dict[str, list[Correction]] = {}
    if path.exists():
        for c in _corrections(str(path), _stamp(path)):
            if c.entity == entity:
                out.setdefault(c.legacy_id, []).append(c)
    return out


def waivers(entity: str) -> list[Waiver]:
    path = _path(os.environ.get("CRM_WAIVERS_FILE") or load_migration_config().waivers_file)
    return [w for w in _waivers(str(path), _stamp(path)) if w.entity == entity] if path.exists() else []


def corrected(raw: dict, found: list[Correction], entity: str) -> dict:
    """The extracted row with the corrections of its fields: each value goes where the field is read from."""
    fields = specs()[entity].fields
    out = dict(raw)
    for c in found:
        out[fields[c.field].source or c.field] = c.value
    return out


def record_applied(conn: sa.Connection, lot_id: str, run_id: str, entity: str, applied: list[Correction]) -> None:
    conn.execute(sa.text(
        "INSERT INTO crm_migration.correction_applied (lot_id, run_id, entity, legacy_id, field, reason, who)"
        " SELECT :l, :r, :e, c ->> 'legacy_id', c ->> 'field', c ->> 'reason', c ->> 'who'"
        " FROM jsonb_array_elements(CAST(:c AS jsonb)) c ON CONFLICT DO NOTHING"),
        {"l": lot_id, "r": run_id, "e": entity, "c": json.dumps(
            [{"legacy_id": c.legacy_id, "field": c.field, "reason": c.reason, "who": c.who} for c in applied])})


def waived_sql(entity: str) -> tuple[str, dict]:
    """A temp table pg_temp.waived (legacy_id, waiver) of the entity's waived rows among those the ledger
    holds as quarantined: by id, or by the reason they were quarantined for."""
    ws = waivers(entity)
    return ("CREATE TEMP TABLE IF NOT EXISTS waived ON COMMIT DROP AS"
            " SELECT g.legacy_id, min(w ->> 'label') AS waiver FROM crm_migration.legacy_ledger g"
            " JOIN jsonb_array_elements(CAST(:waivers AS jsonb)) w ON (w ->> 'legacy_id' = g.legacy_id"
            "  OR w ->> 'reason_code' = g.reason)"
            " WHERE g.entity = :e AND g.fate = 'quarantined' GROUP BY g.legacy_id",
            {"e": entity, "waivers": json.dumps([{
                "legacy_id": w.legacy_id, "reason_code": w.reason_code,
                "label": f"{w.legacy_id or w.reason_code}: {w.reason} (approved by {w.approver})"} for w in ws])})


def pending_corrections(conn: sa.Connection, entity: str) -> set[str]:
    """Legacy ids with a correction no run has applied yet, or still quarantined: the delta reads them
    again although the legacy CRM did not change them (the data owner fixed them here)."""
    ids = corrections(entity)
    if not ids:
        return set()
    pairs = [[lid, c.field] for lid, cs in ids.items() for c in cs]
    return {r[0] for r in conn.execute(sql("data_owner/unapplied_corrections.sql"),
                                       {"e": entity, "p": json.dumps(pairs)})}


def quarantine_file_name(entity: str, reason: str) -> str:
    """<entity>.<stage>_<CODE>.csv for a reason as the report names it (stage:CODE)."""
    return f"{entity}.{reason.replace(':', '_')}.csv"


def quarantine_csv(conn: sa.Connection, lot_id: str, run_id: str, entity: str | None = None,
                   reason: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """(file name, CSV line as a list) of the run's quarantine, header first per file, ordered by entity and
    reason (stage:CODE): the legacy id in clear, every defect of the row, the legacy row's values with
    personal data masked. entity / reason: only those rows."""
    rows = conn.execute(sql("data_owner/quarantined_rows.sql"),
                        {"l": lot_id, "r": run_id, "e": entity, "q": reason}).yield_per(5000)
    current, keys = None, []
    for ent, stage, code, legacy_id, detail, raw in rows:
        name = quarantine_file_name(ent, f"{stage}:{code}")
        if name != current:
            current, keys = name, sorted(raw or {})
            yield name, ["legacy_id", "stage", "reason_code", "defects", *keys]
        yield name, [mask_id(legacy_id), stage, code, scrub(detail or ""),
                     *(mask_value(k, (raw or {}).get(k)) for k in keys)]


def export_quarantine(conn: sa.Connection, lot_id: str, run_id: str, directory: Path) -> dict[str, int]:
    """The run's quarantine as CSV files for data owners, one per entity and reason
    (<directory>/<entity>.<stage>_<CODE>.csv, see quarantine_csv). Returns file name -> rows. Files of an
    earlier attempt of the run go first."""
    if directory.exists():
        for old in directory.glob("*.csv"):
            old.unlink()
    out: dict[str, int] = {}
    f = None
    try:
        for name, line in quarantine_csv(conn, lot_id, run_id):
            if name not in out:
                if f is not None:
                    f.close()
                directory.mkdir(parents=True, exist_ok=True)
                f = (directory / name).open("w", encoding="utf-8", newline="")
                writer, out[name] = csv.writer(f), -1  # the header is no row
            writer.writerow(line)
            out[name] += 1
    finally:
        if f is not None:
            f.close()
    return out
