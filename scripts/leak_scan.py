"""Leak scan of a rehearsal on anonymised data: does any personal legacy value reach the rehearsal?

    python scripts/leak_scan.py [--run-id <rehearsal run id>]

Reads, from the legacy CRM (connection crm_legacy), every value longer than 3 characters of every field that
rehearsals mask (fields of kind text, name, e-mail, phone or domain not marked `safe`, and the relations to
values: a person's e-mails and phones) -- but a value the same row also holds in a field kept as it is (a last
name 'España' that is also the row's country) --, then looks for each, as whole words (case ignored; a phone by its
national digits whatever its format), in what the rehearsal wrote (connection crm_rehearsal: every table of
its target, staging and bookkeeping schemas; the report files of its runs: JSON, HTML, quarantine CSVs):

- in the rows that stand for the same legacy row (every table with a legacy_id column): any such value is a
  leak -- the person's own data reached the rehearsal;
- anywhere else (link tables, reports, the bookkeeping): e-mails, phones and values of 8 characters or more
  (a shorter word -- "Ward", "Read" -- is found by coincidence in a masked word of another row, a business
  value or the product's own text; its own rows are where it would leak).

Prints each leak (entity, field, legacy id, where) and the count; exits 1 on any. The tests run it after the
nightly rehearsal (tests/e2e/test_ui_browser.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import phonenumbers
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from crm_migration.model.config import load_lots  # noqa: E402
from crm_migration.model.db import connection_url, engine  # noqa: E402
from crm_migration.model.settings import REPO_ROOT, load_migration_config  # noqa: E402
from crm_migration.model.spec import spec  # noqa: E402
from crm_migration.source.sources import open_rows, relation_rows  # noqa: E402

TEXT_KINDS = ("text", "name", "email", "phone", "domain")
SCHEMAS = ("crm", "stg", "crm_migration")
_WORD = re.compile(r"[^\W_]+")
_PHONE_LIKE = re.compile(r"\+?\d[\d\s().\-/]{5,}\d")


def national(phone: str) -> str | None:
    """A phone's digits without its country or trunk prefix (8 digits or more), else None."""
    digits = re.sub(r"\D", "", phone)
    try:
        if phone.strip().startswith(("+", "00")):
            digits = str(phonenumbers.parse("+" + digits[2 if phone.strip().startswith("00") else 0:],
                                            None).national_number)
    except phonenumbers.NumberParseException:
        pass
    digits = digits.lstrip("0")
    return digits if len(digits) >= 8 else None


def legacy_values(legacy_url: str) -> Iterator[tuple[str, str, str, str]]:
    """(entity, field, legacy id, value) of every value a rehearsal must mask."""
    seen: set[str] = set()
    for lot in load_lots():
        for entity in lot.entities:
            fields = spec(entity).fields
            columns = {f.source or name: (name, f.kind) for name, f in fields.items()
                       if f.kind in TEXT_KINDS and not f.safe and not f.values_of}
            kept = {f.source or name for name, f in fields.items() if not f.values_of} - set(columns)
            with open_rows(legacy_url, lot, entity) as (_, rows):
                for legacy_id, _, data, _ in rows:
                    row = json.loads(data)
                    # a value the row also holds in a field kept as it is (a last name 'España', its country)
                    business = {str(row[c]).strip().lower() for c in kept if row.get(c) not in (None, "")}
                    for column, (name, kind) in columns.items():
                        value = row.get(column)
                        if isinstance(value, str) and len(value.strip()) > 3 and value.strip().lower() not in business:
                            yield entity, f"{name}:{kind}", str(legacy_id), value.strip()
            if entity in seen:
                continue
            seen.add(entity)
            for rel_name, rel in spec(entity).relations.items():
                if rel.entity is None:  # a relation to values (e-mails, phones): they are personal
                    for key, value, _, _ in relation_rows(legacy_url, rel):
                        if len(value.strip()) > 3:
                            yield entity, f"{rel_name}:{rel.kind}", key, value.strip()


def rehearsal_texts(rehearsal_url: str, report_files: list[Path]) -> Iterator[tuple[str, str | None, str]]:
    """(where, legacy id or None, text) of everything the rehearsal wrote: each row of the tables with a
    legacy_id, the other tables' rows in parts, each report file."""
    with engine(rehearsal_url).connect() as conn:
        tables = conn.execute(sa.text(
            "SELECT t.table_schema || '.' || t.table_name, bool_or(c.column_name = 'legacy_id')"
            " FROM information_schema.tables t JOIN information_schema.columns c USING (table_schema, table_name)"
            " WHERE t.table_schema = ANY(:s) AND t.table_type = 'BASE TABLE' GROUP BY 1"),
            {"s": list(SCHEMAS)}).all()
        for table, keyed in tables:
            select = f"SELECT {'legacy_id::text' if keyed else 'NULL'}, t::text FROM {table} t"
            res = conn.execution_options(stream_results=True).execute(sa.text(select))
            if keyed:
                for legacy_id, text in res:
                    yield table, legacy_id, text
            else:
                for part in res.partitions(5000):
                    yield table, None, "\n".join(text for _, text in part)
    for path in report_files:
        yield str(path), None, path.read_text(encoding="utf-8", errors="replace")


def _found(value: str, text: str) -> bool:
    """value in text as whole words (not inside a longer word: 'read' is not in 'changed_since_read'), and not
    as a JSON key (a last name 'Title' is not the key "title" of a staged row)."""
    return any(not text.startswith('":', m.end()) and not text.startswith('"":', m.end())
               for m in re.finditer(r"(?<!\w)" + re.escape(value) + r"(?!\w)", text))


def scan(legacy_url: str, rehearsal_url: str, report_files: list[Path]) -> list[tuple[str, str, str, str]]:
    """Leaks: (entity, field, legacy id, where it was found)."""
    values = list(legacy_values(legacy_url))
    own: dict[str, list[tuple[str, str]]] = defaultdict(list)  # legacy id -> (where, text) of its rows
    elsewhere: list[tuple[str, str]] = []
    for where, legacy_id, text in rehearsal_texts(rehearsal_url, report_files):
        (own[legacy_id] if legacy_id is not None else elsewhere).append((where, text.lower()))
    words = {w for _, text in elsewhere for w in _WORD.findall(text)}
    phones: dict[str, str] = {}
    for where, text in [*elsewhere, *(x for rows in own.values() for x in rows)]:
        for m in _PHONE_LIKE.finditer(text):
            digits = national(m.group(0))
            if digits:
                phones.setdefault(digits, where)
    leaks = []
    for entity, field, legacy_id, value in values:
        low = value.lower()
        if field.endswith(":phone"):
            digits = national(value)
            if digits and digits in phones:
                leaks.append((entity, field, legacy_id, phones[digits]))
            continue
        where = next((w for w, text in own.get(legacy_id, ()) if _found(low, text)), None)
        if where is None and ("@" in low or len(low) >= 8) and all(w in words for w in _WORD.findall(low)):
            where = next((w for w, text in elsewhere if _found(low, text)), None)
        if where is not None:
            leaks.append((entity, field, legacy_id, where))
    return leaks


def report_files_of(run_id: str, report_dir: Path) -> list[Path]:
    """The report files (JSON, HTML, quarantine CSVs) of the runs a rehearsal named rehearsal__<run_id>."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    return [p for p in report_dir.rglob("*") if p.is_file() and stem in str(p)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-id", help="the rehearsal's run id (its runs' reports are scanned too)")
    args = ap.parse_args()
    cfg = load_migration_config()
    report_dir = Path(cfg.report_dir) if Path(cfg.report_dir).is_absolute() else REPO_ROOT / cfg.report_dir
    files = report_files_of(args.run_id, report_dir) if args.run_id else []
    leaks = scan(connection_url(cfg.connections.legacy), connection_url(cfg.connections.rehearsal), files)
    for entity, field, legacy_id, where in leaks:
        print(f"LEAK {entity}.{field} of legacy id {legacy_id}: found in {where}")
    print(f"{len(leaks)} legacy values found in the rehearsal ({len(files)} report files scanned)")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
