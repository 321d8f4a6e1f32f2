"""Reading a legacy entity, whatever the source: a SQL query on any SQLAlchemy URL, or exported CSV
files under the directory a ``file://`` legacy connection names.

``open_rows`` yields the source's clock and its rows as (legacy id, hash, JSON, row); ``open_keys``
yields (legacy id, hash, modification time) only. The extract, the reconciliation, the freeze and the
contract check all read through here, so a file source gets every guarantee a database has: the
watermark is the export's time, the delta takes the rows a newer export changed, the freeze compares
every row by key and hash.
"""

from __future__ import annotations

import csv
import glob
from contextlib import contextmanager
from datetime import datetime, UTC
from pathlib import Path
from collections.abc import Iterator
from urllib.parse import unquote, urlparse

import sqlalchemy as sa

from crm_migration.model.config import LotConfig
from crm_migration.source.legacy import (MODIFIED_KEY, NUL_MARK, _moment, bucket_of, extract_sql, extract_template,
                                         in_buckets, iter_keys, iter_rows, json_row, legacy_clock, row_hash,
                                         sql_file)
from crm_migration.model.spec import spec


def is_file_source(legacy_url: str) -> bool:
    return legacy_url.startswith("file:")


def compares_hashes(lot: LotConfig, entity: str) -> bool:
    """The delta compares every row's hash with the version migrated (whole scope read): asked by the
    lot (link tables without dates), always for exported files (a newer export of the same files) and for
    an entity derived from a column's values (no dates)."""
    es = spec(entity)
    return lot.entities[entity].change_detection.compare_hashes or es.file is not None or es.derived_from is not None


def _directory(legacy_url: str) -> Path:
    return Path(unquote(urlparse(legacy_url).path))


def export_files(legacy_url: str, entity: str) -> list[Path]:
    fs = spec(entity).file
    if fs is None:
        raise ValueError(f"{entity} is read by a SQL query (config/entities: extract), but the legacy connection"
                         f" is a directory ({legacy_url}): point it at the database")
    return [Path(p) for p in sorted(glob.glob(str(_directory(legacy_url) / fs.path)))]


def _file_clock(files: list[Path]) -> datetime:
    """The export's time: the newest file's (the watermark of a file source)."""
    if not files:
        return datetime.now(UTC)
    return datetime.fromtimestamp(max(p.stat().st_mtime for p in files), tz=UTC)


def _file_rows(files: list[Path], entity: str, windows: dict | None, whole_scopes: bool,
               ids: list[str] | None) -> Iterator[tuple[str | None, str, str, dict]]:
    fs = spec(entity).file
    wanted = set(ids) if ids is not None else None
    starts = [since for _, since in (windows or {}).values()] if windows and not whole_scopes else []
    since = min(starts) if starts else None
    for path in files:
        with _records(path, fs) as reader:
            header = next(reader, None)
            if header is None:
                continue
            keys = [fs.columns.get(h, h) for h in header]
            for values in reader:
                values = tuple(values) + ("",) * (len(keys) - len(values))
                row = dict(zip(keys, values[:len(keys)], strict=True))
                legacy_id = row.get("id") or None
                if wanted is not None and legacy_id not in wanted:
                    continue
                if since is not None:
                    modified = _parse(row.get(MODIFIED_KEY))
                    if modified is not None and modified < since:
                        continue
                nul = sorted(k for k, v in row.items() if "\x00" in v)
                if nul:
                    row[NUL_MARK] = nul
                yield legacy_id, row_hash(values), json_row(row), row


@contextmanager
def _records(path: Path, fs) -> Iterator[Iterator[list[str]]]:  # noqa: ANN001 - FileSource
    """The file's header then its records, every value as text (an Excel cell as an export writes it:
    dates ISO, empty cells empty), so a CSV and an XLSX of the same data give the same rows."""
    if fs.format == "csv":
        with path.open(encoding=fs.encoding, newline="") as f:
            yield csv.reader(f, delimiter=fs.delimiter)
        return
    import openpyxl  # only for Excel sources

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        if fs.sheet is not None and fs.sheet not in book.sheetnames:
            raise ValueError(f"{path}: no sheet {fs.sheet!r} (sheets: {book.sheetnames}; config/entities: file.sheet)")
        sheet = book[fs.sheet] if fs.sheet is not None else book.worksheets[0]
        yield ([_cell(v) for v in row] for row in sheet.iter_rows(values_only=True)
               if any(v not in (None, "") for v in row))
    finally:
        book.close()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse(text: str | None) -> datetime | None:
    try:
        return _moment(datetime.fromisoformat(text.strip())) if text else None
    except ValueError:
        return None


def _check_scopes(lot: LotConfig, entity: str, windows: dict | None) -> None:
    filters = [lot.entities[entity].source_filter] if entity in lot.entities else []
    filters += [f for f, _ in (windows or {}).values()]
    if any(f.strip() != "1=1" for f in filters):
        raise ValueError(f"{entity} is read from exported files: a lot's source_filter must be 1=1 (split the"
                         " export instead)")


@contextmanager
def open_rows(legacy_url: str, lot: LotConfig, entity: str, windows: dict | None = None, whole_scopes: bool = False,
              ids: list[str] | None = None, tolerant: bool = False, buckets: set[str] | None = None):
    """(clock, rows): the entity's rows in the lot's scope, or a delta's window, or those ids; with buckets,
    only the rows of those key ranges (stages/checksums.py)."""
    if is_file_source(legacy_url):
        _check_scopes(lot, entity, windows)
        files = export_files(legacy_url, entity)
        rows = _file_rows(files, entity, windows, whole_scopes, ids)
        if buckets is not None:
            rows = (r for r in rows if r[0] is not None and bucket_of(r[0]) in buckets)
        yield _file_clock(files), rows
        return
    from crm_migration.model.db import engine

    query, binds = extract_sql(lot, entity, windows, whole_scopes, ids)
    with engine(legacy_url).connect() as src:
        yield legacy_clock(src), iter_rows(src, query, binds, tolerant, buckets)


@contextmanager
def open_keys(legacy_url: str, lot: LotConfig, entity: str, windows: dict | None = None, whole_scopes: bool = False,
              tolerant: bool = False, buckets: set[str] | None = None):
    """(clock, keys): (legacy id, hash, modification time) of the same rows as open_rows."""
    if is_file_source(legacy_url):
        with open_rows(legacy_url, lot, entity, windows, whole_scopes, buckets=buckets) as (clock, rows):
            yield clock, ((lid, h, _parse(row.get(MODIFIED_KEY))) for lid, h, _, row in rows)
        return
    from crm_migration.model.db import engine

    query, binds = extract_sql(lot, entity, windows, whole_scopes)
    with engine(legacy_url).connect() as src:
        yield legacy_clock(src), iter_keys(src, query, binds, tolerant, buckets)


def legacy_ids_sql(entity: str) -> str:
    """Every id of the entity's legacy tables (column id; no scope)."""
    return " UNION ALL ".join(f"SELECT id FROM {t}" for t in spec(entity).legacy_tables)


def legacy_ids(legacy_url: str, entity: str, buckets: set[str] | None = None) -> set[str]:
    """Every legacy id of the entity (hard-delete detection); buckets: only those key ranges'."""
    if is_file_source(legacy_url):
        found = {lid for lid, *_ in _file_rows(export_files(legacy_url, entity), entity, None, True, None)
                 if lid is not None}
    else:
        from crm_migration.model.db import engine

        with engine(legacy_url).connect() as conn:
            if spec(entity).derived_from is None:  # the legacy tables' ids, only those ranges' read
                res = conn.execution_options(stream_results=True, yield_per=50_000).execute(sa.text(
                    f"SELECT y.id FROM ({legacy_ids_sql(entity)}) y WHERE y.id IS NOT NULL"
                    f" AND {in_buckets(conn, 'y.id', buckets)}"))
                return {str(r[0]) for r in res}
            # its ids are the values: its extract's first column
            found = {str(r[0]) for r in conn.exec_driver_sql(extract_template(entity, source_filter="1=1",
                                                                              delta_filter="1=1"))}
    return found if buckets is None else {i for i in found if bucket_of(i) in buckets}


_DEAD = {"", "0", "false", "f", "no", "n", "none", "null"}


def _flag(value: object) -> bool:
    """A link table's flag (deleted, primary) as SuiteCRM, MariaDB, PostgreSQL or an export writes it."""
    return value is not None and str(value).strip().lower() not in _DEAD


def _link_columns(rel) -> tuple[tuple[str, ...], tuple[str | None, ...]]:  # noqa: ANN001 - RelationSpec
    """A relation's extra columns (the region last) and every column read: key, value, flags, extras."""
    extra = tuple(rel.columns) + ((rel.region_from,) if rel.region_from else ())
    return extra, (rel.key, rel.value, rel.deleted, rel.primary, *extra)


def relation_select(rel) -> str:  # noqa: ANN001 - RelationSpec
    """A relation's legacy link rows as one query (a link table or its query file): columns k (key), v (value),
    d (deleted flag), p (primary flag), then x0.. (extra columns, the region last)."""
    extra, wanted = _link_columns(rel)
    names = ("k", "v", "d", "p", *(f"x{i}" for i in range(len(extra))))
    source = rel.table
    if rel.query is not None:
        source = f"({sql_file(rel.query).read_text(encoding='utf-8').strip().rstrip(';')}) q"
    return "SELECT " + ", ".join(f"{c if c else 'NULL'} AS {n}" for c, n in zip(wanted, names, strict=True)) + \
        f" FROM {source}"


def relation_rows(legacy_url: str, rel, keys: list[str] | None = None  # noqa: ANN001 - RelationSpec
                  ) -> Iterator[tuple[str, str, bool, tuple]]:
    """The live rows of a relation's legacy link table or files: (key id, value id, primary, extra columns,
    then the region_from column if any); keys: only the rows of those key ids.
    A row is live when its deleted flag is not set and both ids are there."""
    extra, wanted = _link_columns(rel)
    wanted_keys = set(keys) if keys is not None else None

    def live(rows: Iterator[tuple]) -> Iterator[tuple[str, str, bool, tuple]]:
        for key, value, deleted, primary, *cols in rows:
            if key not in (None, "") and value not in (None, "") and not _flag(deleted):
                if wanted_keys is not None and str(key) not in wanted_keys:
                    continue
                yield str(key), str(value), _flag(primary), tuple(None if c in (None, "") else str(c) for c in cols)

    if is_file_source(legacy_url):
        fs = rel.file
        for path in sorted(glob.glob(str(_directory(legacy_url) / fs.path))):
            with _records(Path(path), fs) as records:
                header = [fs.columns.get(h, h) for h in next(records, [])]
                missing = [c for c in (rel.key, rel.value, *extra) if c not in header]
                if missing:
                    raise ValueError(f"{path}: no column {missing} (header: {header}; config/entities: relations,"
                                     " file.columns maps a header to a column)")
                at = [header.index(c) if c in header else None for c in wanted]
                yield from live(tuple(r[i] if i is not None and i < len(r) else None for i in at) for r in records)
        return
    from crm_migration.model.db import engine

    query = relation_select(rel)
    with engine(legacy_url).connect() as conn:
        if keys is None:
            res = conn.execution_options(stream_results=True, yield_per=50_000).exec_driver_sql(query)
            yield from live(tuple(r) for r in res)
            return
        some = sa.text(f"SELECT * FROM ({query}) y WHERE y.k IN :keys").bindparams(
            sa.bindparam("keys", expanding=True))
        for start in range(0, len(keys), 1000):
            yield from live(tuple(r) for r in conn.execute(some, {"keys": keys[start:start + 1000]}))
