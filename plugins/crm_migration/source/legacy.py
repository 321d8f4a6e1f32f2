"""Reading the legacy source: its clock, the extract query of a scope or a delta window, and its
rows as (legacy id, hash, JSON) whatever the driver returns.

The extract (``iter_rows``: JSON and hash) and the reconciliation and freeze comparison
(``iter_keys``: id and hash only) hash a row the same way -- in the legacy database's own SQL where it can
(``sql_row_hash``: PostgreSQL, MySQL/MariaDB; the checksums by key range need it), here otherwise
(``row_hash``) -- so the freeze compares like with like.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import date, datetime, UTC
from string import Template
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from collections.abc import Callable, Iterator

import sqlalchemy as sa

from crm_migration.model.config import LotConfig
from crm_migration.model.db import SQL_DIR
from crm_migration.model.spec import PerEntity, spec

log = logging.getLogger(__name__)
T = TypeVar("T")

# the extract queries' alias of the main table (config/entities), and their output column with its
# modification time (the extract contract: every query returns id and date_modified)
EXTRACT_ALIAS = PerEntity(lambda es: es.alias)
MODIFIED_KEY = "date_modified"
NUL_MARK = "_nul_bytes"  # added to a row whose values held NUL bytes (PostgreSQL text cannot): cleanse quarantines it

_CLOCK_SQL = {
    "postgresql": "SELECT clock_timestamp() AT TIME ZONE 'UTC'",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "mariadb": "SELECT UTC_TIMESTAMP(6)",
    "sqlite": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
    "mssql": "SELECT SYSUTCDATETIME()",
    "oracle": "SELECT SYS_EXTRACT_UTC(SYSTIMESTAMP) FROM dual",
}


def _json_value(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, str) and "\x00" in v:  # PostgreSQL text/jsonb cannot hold NUL
        return v.replace("\x00", "\ufffd")
    return v


def json_row(row: dict) -> str:
    return json.dumps({k: _json_value(v) for k, v in row.items()}, ensure_ascii=False, sort_keys=True, default=str)


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def naive_utc(value: datetime) -> datetime:
    """The legacy CRM stores naive UTC timestamps: binds are passed that way."""
    return as_utc(value).replace(tzinfo=None)


def legacy_clock(conn: sa.Connection) -> datetime:
    """The legacy database's own clock (UTC): watermarks are taken from it, not from the worker's."""
    sql = _CLOCK_SQL.get(conn.dialect.name)
    if sql is None:
        log.warning("no clock query for dialect %s: using this machine's clock", conn.dialect.name)
        return datetime.now(UTC)
    value = conn.exec_driver_sql(sql).scalar_one()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


def tolerate_bad_dates(conn: sa.Connection) -> None:
    """Dates the driver cannot represent (PostgreSQL 'infinity', year 10000) come back as text, so the
    row is quarantined (DATE_INVALID) instead of the whole extract failing. MySQL drivers already
    return zero dates ('0000-00-00') as text."""
    if conn.dialect.driver != "psycopg":
        return
    from psycopg.types import datetime as pgdt

    raw = conn.connection.driver_connection
    for name, base in (("timestamp", pgdt.TimestampLoader), ("timestamptz", pgdt.TimestamptzLoader),
                       ("date", pgdt.DateLoader)):
        raw.adapters.register_loader(name, type(f"Tolerant{base.__name__}", (base,), {"load": _tolerant_load}))


def _tolerant_load(self, data):  # noqa: ANN001 - psycopg Loader protocol
    try:
        return super(type(self), self).load(data)
    except Exception:  # noqa: BLE001 - any value the loader rejects is handed on as its text
        return bytes(data).decode("utf-8", errors="replace")


def read_with_fallback(read: Callable[[bool], T]) -> T:
    """Run read(tolerant=False) with the driver's fast date loaders; if a date it cannot represent
    shows up ('infinity'), read again from the start with tolerant ones. read must be restartable."""
    try:
        return read(False)
    except sa.exc.DataError as exc:
        log.warning("a value the driver cannot load (%s): reading again with tolerant date loaders",
                    str(exc).splitlines()[0])
        return read(True)


def sql_file(name: str, what: str = "extract") -> Path:
    """A SQL file the entity files name: a path relative to the config directory, or under include/sql/extract/."""
    from crm_migration.model.settings import config_dir

    path = next((p for p in (config_dir() / name, SQL_DIR / "extract" / name) if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"{what} SQL {name!r} not found under {config_dir()} or {SQL_DIR / 'extract'}"
                                " (config/entities)")
    return path


def extract_template(entity: str, whole: bool = False, **parts: str) -> str:
    """The entity's extract SQL (config/entities: a file under include/sql/extract/, or a path relative to
    the config directory; or generated for derived_from) with its $source_filter and $delta_filter filled in;
    whole: the query reads whole scopes (with_links joins its link tables instead of looking each row up)."""
    es = spec(entity)
    if es.derived_from is not None:
        text = es.derived_from.query(es.alias, [es.source_of(n) for n in es.fields])
    else:
        text = sql_file(es.extract, f"extract of {entity}:").read_text(encoding="utf-8")
    return with_links(entity, Template(text).substitute(**parts), whole)


def with_links(entity: str, sql: str, whole: bool = False) -> str:
    """The query with one column per reference kept in a link table (config/entities: through): of the live
    link rows (their parent not soft-deleted, with parent_deleted), the one ``choose`` picks, ties broken by
    the smallest parent id, so a read gives the same value whatever the database. A read of a few rows looks
    each row's link up (a subquery per row); whole (every row of a scope: a lot, the freeze, the checksums) joins
    the link table's choices once instead -- the same values, so the same row hash."""
    es = spec(entity)
    if not es.links:
        return sql
    cols, joins = [], []
    for i, (column, t) in enumerate(es.links):
        lk = f"lk{i}"
        live = f" AND {lk}.{t.deleted} = 0" if t.deleted else ""
        if t.parent_deleted:  # a link to a parent soft-deleted in its own table is dead
            parent = _parent_table(entity, t)
            live += (f" AND NOT EXISTS (SELECT 1 FROM {parent} pp{i} WHERE pp{i}.id = {lk}.{t.value}"
                     f" AND pp{i}.{t.parent_deleted} <> 0)")
        order = f"{lk}.{t.modified} DESC" if t.choose == "latest" else f"{lk}.{t.primary} DESC"
        if whole:
            if t.choose == "smallest":
                chosen = (f"SELECT {lk}.{t.key} AS k, min({lk}.{t.value}) AS v FROM {t.table} {lk}"
                          f" WHERE 1=1{live} GROUP BY {lk}.{t.key}")
            else:
                chosen = (f"SELECT k, v FROM (SELECT {lk}.{t.key} AS k, {lk}.{t.value} AS v, ROW_NUMBER() OVER"
                          f" (PARTITION BY {lk}.{t.key} ORDER BY {order}, {lk}.{t.value}) AS n FROM {t.table} {lk}"
                          f" WHERE 1=1{live}) ranked WHERE n = 1")
            joins.append(f"LEFT JOIN ({chosen}) j{i} ON j{i}.k = x.id")
            cols.append(f"j{i}.v AS {column}")
            continue
        where = f"FROM {t.table} {lk} WHERE {lk}.{t.key} = x.id{live}"
        if t.choose == "smallest":
            cols.append(f"(SELECT min({lk}.{t.value}) {where}) AS {column}")
        else:
            cols.append(f"(SELECT {lk}.{t.value} {where} ORDER BY {order}, {lk}.{t.value} LIMIT 1) AS {column}")
    body = sql.rstrip().rstrip(";")
    return f"SELECT x.*, {', '.join(cols)}\nFROM (\n{body}\n) x{''.join(' ' + j for j in joins)}"


def link_values_sql(entity: str, whole: bool = True) -> str:
    """Every row's id and the parent each of its link-table references picks now (with_links over the
    ids alone): what the delta compares with the parent a target row was built from (whole: False for a read
    of a few of them)."""
    return with_links(entity, f"SELECT id FROM {spec(entity).legacy_tables[0]}", whole=whole)


def _parent_table(entity: str, t) -> str:  # noqa: ANN001 - a LinkSpec
    """The legacy table of the entity a link-table reference of entity points at."""
    return spec(next(f.entity for f in spec(entity).fields.values() if f.through == t)).legacy_tables[0]


def _changed_links(entity: str, bind: str) -> list[str]:
    """A link row added, changed or soft-deleted since the window start is a change of the row; with
    parent_deleted, so is a linked parent soft-deleted since (the link is dead, the row's value moves; any
    other edit of the parent leaves the row as it was)."""
    alias = EXTRACT_ALIAS[entity]
    out = []  # IN (uncorrelated): the database reads the few changed link rows once, not one look-up per row
    for _, t in spec(entity).links:
        if t.modified:
            out.append(f"{alias}.id IN (SELECT lk.{t.key} FROM {t.table} lk WHERE lk.{t.modified} >= :{bind})")
        if t.parent_deleted:
            parent = _parent_table(entity, t)
            out.append(f"{alias}.id IN (SELECT lk.{t.key} FROM {t.table} lk JOIN {parent} pp ON pp.id = lk.{t.value}"
                       f" WHERE pp.{t.parent_modified} >= :{bind} AND pp.{t.parent_deleted} <> 0)")
    return out


def change_columns(lot: LotConfig, entity: str) -> tuple[str, ...]:
    return lot.entities[entity].change_detection.columns or (f"{EXTRACT_ALIAS[entity]}.{MODIFIED_KEY}",)


def extract_sql(lot: LotConfig, entity: str, windows: dict[str, tuple[str, datetime]] | None = None,
                whole_scopes: bool = False, ids: list[str] | None = None) -> tuple[str, dict]:
    """The entity's extract query and its binds.

    windows None: the lot's own scope (its source_filter), every row. Otherwise scope -> (filter, since):
    rows of any scope with a change column at or after its since (inclusive), or, with whole_scopes,
    every row of those scopes (the caller compares hashes). ids: only those legacy ids, of any of the
    scopes (the other members of a merged customer whose row changed).
    """
    if ids is not None:
        scopes = " OR ".join(f"({filt})" for filt, _ in (windows or {}).values()) or lot.entities[entity].source_filter
        binds = {f"id_{i}": v for i, v in enumerate(ids)}
        in_list = ", ".join(f":id_{i}" for i in range(len(ids))) or "NULL"
        return extract_template(entity, source_filter=scopes,
                                delta_filter=f"{EXTRACT_ALIAS[entity]}.id IN ({in_list})"), binds
    if windows is None:
        return extract_template(entity, whole=True, source_filter=lot.entities[entity].source_filter,
                                delta_filter="1=1"), {}
    cols, parts, binds = change_columns(lot, entity), [], {}
    for i, scope in enumerate(sorted(windows)):
        filt, since = windows[scope]
        if whole_scopes:
            parts.append(f"({filt})")
        else:
            binds[f"since_{i}"] = naive_utc(since)
            changed = [f"{c} >= :since_{i}" for c in cols] + _changed_links(entity, f"since_{i}")
            parts.append(f"(({filt}) AND ({' OR '.join(changed)}))")
    return extract_template(entity, whole=whole_scopes, source_filter="1=1",
                            delta_filter=" OR ".join(parts) or "1=0"), binds


def row_hash(values: tuple) -> str:
    """Hash of one legacy row's values in query order: repr is exact for every type a driver returns
    (text, numbers, Decimal, dates) and fast. Files and databases that do not hash rows themselves
    (sql_row_hash) are hashed with it, by the extract, the reconciliation and the freeze alike."""
    if memoryview in map(type, values):  # its repr is an address: hash the bytes
        values = tuple(bytes(v) if type(v) is memoryview else v for v in values)
    return hashlib.md5(repr(values).encode("utf-8", "surrogatepass")).hexdigest()


def _stream(conn: sa.Connection, sql: str, binds: dict, tolerant: bool) -> sa.CursorResult:
    if tolerant:
        tolerate_bad_dates(conn)
    return conn.execution_options(stream_results=True, yield_per=10_000).execute(sa.text(sql), binds)


# --- a row's hash computed by the legacy database (checksums by key range: stages/checksums.py) -------------

HASH_COLUMN = "_crm_row_hash"
BUCKET_CHARS = 4  # a key range: the first hex characters of md5(id): 65,536 ranges
_BUCKET_RE = re.compile(rf"^[0-9a-f]{{{BUCKET_CHARS}}}$")


def hashes_in_sql(conn: sa.Connection) -> bool:
    """Whether the legacy database hashes rows itself (PostgreSQL, MySQL, MariaDB); other dialects and
    files are hashed here (row_hash) and read whole."""
    return conn.dialect.name in ("postgresql", "mysql", "mariadb")


def _columns(conn: sa.Connection, sql: str, binds: dict) -> list[str]:
    return list(conn.execute(sa.text(f"SELECT * FROM ({sql}) y LIMIT 0"), binds).keys())


def sql_row_hash(conn: sa.Connection, sql: str, binds: dict) -> str:
    """The expression of a row's hash over every output column of the query aliased y, in the legacy
    database's own SQL: md5 of the row as PostgreSQL writes it; in MySQL/MariaDB md5 of its values as text,
    NULL marked. The extract, the reconciliation, the freeze and the checksums all use it, so a version
    hashed at extract is recognised everywhere."""
    if conn.dialect.name == "postgresql":
        return "md5(CAST(y AS text))"
    cols = ", ".join(f"IFNULL(CAST(y.`{c}` AS CHAR), CHAR(0))" for c in _columns(conn, sql, binds))
    return f"MD5(CONCAT_WS(CHAR(31), {cols}))"


def pg_bucket(column: str) -> str:
    """The key range of an id column in PostgreSQL (a legacy PostgreSQL, and the target's own tables)."""
    return f"substr(md5(CAST({column} AS text)), 1, {BUCKET_CHARS})"


def sql_bucket(conn: sa.Connection, column: str) -> str:
    """The key range of an id column: the first BUCKET_CHARS hex characters of md5 of its text."""
    if conn.dialect.name == "postgresql":
        return pg_bucket(column)
    return f"LEFT(MD5(CAST({column} AS CHAR)), {BUCKET_CHARS})"


def bucket_of(legacy_id: str) -> str:
    """The same key range computed here (a legacy id's text, UTF-8)."""
    return hashlib.md5(legacy_id.encode("utf-8", "surrogatepass")).hexdigest()[:BUCKET_CHARS]


def in_buckets(conn: sa.Connection, column: str, buckets: list[str] | set[str] | None) -> str:
    """A WHERE condition: the id column's key range is one of buckets (None: every row)."""
    if buckets is None:
        return "1=1"
    bad = [b for b in buckets if not _BUCKET_RE.match(b)]
    if bad:
        raise ValueError(f"not a key range: {bad[:3]}")
    return f"{sql_bucket(conn, column)} IN ({', '.join(repr(b) for b in sorted(buckets)) or 'NULL'})"


def hashed_query(conn: sa.Connection, sql: str, binds: dict, keys_only: bool = False,
                 buckets: set[str] | None = None) -> str | None:
    """The query with its rows' hash as a last column (HASH_COLUMN), or only (id, hash, date_modified) with
    keys_only, only the rows of those key ranges with buckets; None where the database does not hash."""
    if not hashes_in_sql(conn):
        return None
    h = sql_row_hash(conn, sql, binds)
    cols = f"y.id, {h} AS {HASH_COLUMN}, y.{MODIFIED_KEY}" if keys_only else f"y.*, {h} AS {HASH_COLUMN}"
    return f"SELECT {cols} FROM ({sql}) y WHERE {in_buckets(conn, 'y.id', buckets)}"


def iter_rows(conn: sa.Connection, sql: str, binds: dict, tolerant: bool = False,
              buckets: set[str] | None = None) -> Iterator[tuple[str | None, str, str, dict]]:
    """Stream (legacy_id, row_hash, data JSON, row) of a query on a legacy connection (the hash the legacy
    database computes where it can, row_hash otherwise)."""
    wrapped = hashed_query(conn, sql, binds, buckets=buckets)
    result = _stream(conn, wrapped or sql, binds, tolerant)
    keys = list(result.keys())[:-1] if wrapped else list(result.keys())
    for values in result:
        values = tuple(values)
        if wrapped:
            values, digest = values[:-1], values[-1]
        else:
            digest = row_hash(values)
        row = dict(zip(keys, values, strict=True))
        nul = sorted(k for k, v in row.items() if isinstance(v, str) and "\x00" in v)
        if nul:
            row[NUL_MARK] = nul
        legacy_id = row.get("id")
        yield (None if legacy_id is None else str(legacy_id)), digest, json_row(row), row


def iter_keys(conn: sa.Connection, sql: str, binds: dict, tolerant: bool = False,
              buckets: set[str] | None = None) -> Iterator[tuple[str | None, str, datetime | None]]:
    """Stream (legacy_id, row_hash, modified) only: what the reconciliation and the freeze compare (the
    legacy database sends only those where it hashes rows itself)."""
    wrapped = hashed_query(conn, sql, binds, keys_only=True, buckets=buckets)
    if wrapped:
        for legacy_id, digest, modified in _stream(conn, wrapped, binds, tolerant):
            yield (None if legacy_id is None else str(legacy_id)), digest, _moment(modified)
        return
    result = _stream(conn, sql, binds, tolerant)
    keys = list(result.keys())
    i_id, i_mod = keys.index("id"), keys.index(MODIFIED_KEY) if MODIFIED_KEY in keys else None
    for values in result:
        values = tuple(values)
        legacy_id = values[i_id]
        modified = values[i_mod] if i_mod is not None else None
        yield (None if legacy_id is None else str(legacy_id)), row_hash(values), _moment(modified)


def _moment(value: object) -> datetime | None:
    """A modification time as aware UTC; anything else (NULL, unreadable text) is no time."""
    return as_utc(value) if isinstance(value, datetime) else None


def modified_of(row: dict) -> datetime | None:
    return _moment(row.get(MODIFIED_KEY))
