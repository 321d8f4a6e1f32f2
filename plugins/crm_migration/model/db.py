"""Database access: connection URLs from Airflow connections or the environment,
SQL templates from include/sql, and slice-replacing writes to staging."""

from __future__ import annotations

import hashlib
import os
import re
from contextlib import contextmanager
from functools import lru_cache
from string import Template
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import quote

import sqlalchemy as sa

from crm_migration.model.settings import REPO_ROOT

SQL_DIR = REPO_ROOT / "include" / "sql"


# Airflow conn_type -> SQLAlchemy dialect+driver (the driver to install is named in docs/adapting.md)
DRIVERS = {
    "postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql",
    "mssql": "mssql+pymssql", "oracle": "oracle+oracledb", "sqlite": "sqlite",
}
_DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433,
                  "oracle": 1521}


def connection_url(conn_id: str) -> str:
    """SQLAlchemy URL for an Airflow connection id.

    ``AIRFLOW_CONN_<ID>`` (a URI) is read directly so plain scripts and tests need
    no Airflow; otherwise the Airflow secrets backends are asked, and the connection's type picks the
    dialect (a MySQL connection stays MySQL).
    """
    uri = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if uri is None:
        from airflow.sdk import Connection  # lazy: only inside a running Airflow

        uri = connection_uri(Connection.get(conn_id))
    return to_sqlalchemy_url(uri)


def connection_uri(conn) -> str:  # noqa: ANN001 - an Airflow Connection (or anything with its fields)
    kind = (conn.conn_type or "postgres").lower()
    if kind == "sqlite":
        return f"sqlite:///{conn.host or conn.schema or ''}"
    auth = quote(conn.login or "", safe="")
    if conn.password:
        auth += ":" + quote(conn.password, safe="")
    port = conn.port or _DEFAULT_PORTS.get(kind, "")
    uri = f"{kind}://{auth}@{conn.host or ''}{f':{port}' if port else ''}/{conn.schema or ''}"
    extra = conn.extra_dejson or {}
    if extra:
        uri += "?" + "&".join(f"{k}={quote(str(v))}" for k, v in extra.items())
    return uri


def to_sqlalchemy_url(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    return f"{DRIVERS.get(scheme, scheme)}://{rest}"


def dsn_parts(url: str) -> dict:
    """host/port/database/user/password of a PostgreSQL URL (host may be a socket dir)."""
    u = sa.engine.make_url(url)
    host = u.host or u.query.get("host") or "localhost"
    return {
        "host": host,
        "port": u.port or 5432,
        "database": u.database,
        "user": u.username or "postgres",
        "password": u.password or "",
    }


@lru_cache(maxsize=8)
def engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True, future=True)


def sql_text(relpath: str, **identifiers: str) -> str:
    """Read include/sql/<relpath>; ``$name`` placeholders must all be given (KeyError otherwise)."""
    path = SQL_DIR / relpath
    return Template(path.read_text(encoding="utf-8")).substitute(**identifiers)


def split_statements(text: str) -> list[str]:
    """A file's statements, one per ``;`` at a line end, comment-only pieces left out (a driver prepares one
    statement at a time once it has bind parameters)."""
    return [s for s in text.split(";\n") if s.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in s.splitlines())]


def sql(relpath: str, **identifiers: str) -> sa.TextClause:
    """include/sql/<relpath> as a statement (``$name`` identifiers filled in, ``:name`` bind parameters kept)."""
    return sa.text(sql_text(relpath, **identifiers))


def upsert_record(conn: sa.Connection, table: str, key: dict, values: dict, jsonb: Sequence[str] = (),
                  touch: str | None = None) -> None:
    """One bookkeeping row (a run's outcome, timing, report...) inserted or, on its key, updated: values
    named in jsonb are JSON text cast to jsonb; touch names a timestamp column set to now() on update."""
    cols = [*key, *values]
    params = {f"p{i}": v for i, v in enumerate([*key.values(), *values.values()])}
    binds = [f"CAST(:p{i} AS jsonb)" if c in jsonb else f":p{i}" for i, c in enumerate(cols)]
    sets = [f"{c} = EXCLUDED.{c}" for c in values] + ([f"{touch} = now()"] if touch else [])
    conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(binds)})"
                         f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(sets)}"), params)


def run_ddl(conn: sa.Connection, relpath: str) -> None:
    conn.exec_driver_sql(sql_text(relpath))


def ensure_target_schema(url: str) -> None:
    """Create target, migration and staging schemas (idempotent, additive). The DDL runs only when it differs
    from the last applied (its hash in crm_migration.schema_state) or a table it creates is missing: a
    no-op ALTER TABLE still takes an exclusive lock, and every lot's prepare task runs this."""
    from crm_migration.model import ddl

    statements = [ddl.renamed_staging_sql(), ddl.target_ddl(), sql_text("ddl/create_migration.sql"),
                  sql_text("ddl/create_staging.sql"), ddl.staging_ddl(), ddl.crosswalk_sql()]
    digest = hashlib.sha256("\n".join(statements).encode()).hexdigest()
    tables = sorted(set(re.findall(r"CREATE TABLE IF NOT EXISTS ([\w.]+)", "\n".join(statements))))
    with engine(url).begin() as conn:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727001)")  # parallel tasks, one DDL
        ddl.check_not_rebuilt(conn)  # never re-create a table that held migrated rows
        if _schema_current(conn, digest, tables):
            return
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.execute(sa.text("INSERT INTO crm_migration.schema_state (ddl_hash) VALUES (:h) ON CONFLICT (one)"
                             " DO UPDATE SET ddl_hash = EXCLUDED.ddl_hash, applied_at = now()"), {"h": digest})


def _schema_current(conn: sa.Connection, digest: str, tables: list[str]) -> bool:
    if conn.execute(sa.text("SELECT to_regclass('crm_migration.schema_state')")).scalar() is None:
        return False
    applied = conn.execute(sa.text("SELECT ddl_hash FROM crm_migration.schema_state")).scalar()
    missing = conn.execute(sa.text("SELECT count(*) FROM unnest(CAST(:t AS text[])) t WHERE to_regclass(t) IS NULL"),
                           {"t": tables}).scalar_one()
    return applied == digest and missing == 0


def copy_rows(conn: sa.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """COPY rows into table through the psycopg 3 driver connection of conn."""
    cur = conn.connection.driver_connection.cursor()
    n = 0
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)
            n += 1
    return n


def copy_csv_rows(conn: sa.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """COPY rows of str, int, float, None and lists of them (written as PostgreSQL arrays) into table as CSV
    built here: psycopg adapting each array element (a regular expression per element) was most of the time
    of writing a million rows of arrays. None is NULL; a string, even empty, is quoted."""

    def element(v: object) -> str:  # an array element, in the array literal's own quoting
        if v is None:
            return "NULL"
        if isinstance(v, str):
            if "\\" in v or '"' in v:
                v = v.replace("\\", "\\\\").replace('"', '\\"')
            return '"' + v + '"'
        return repr(v)

    def field(v: object) -> str:  # a CSV field
        if v is None:
            return ""
        if isinstance(v, (list, tuple)):
            v = "{" + ",".join(element(x) for x in v) + "}"
        elif not isinstance(v, str):
            return repr(v)
        return '"' + v.replace('"', '""') + '"'

    cur = conn.connection.driver_connection.cursor()
    n = 0
    lines: list[str] = []
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)") as cp:
        for row in rows:
            lines.append(",".join(field(v) for v in row))
            n += 1
            if len(lines) >= 10_000:
                cp.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            cp.write("\n".join(lines) + "\n")
    return n


def copy_csv_file(conn: sa.Connection, table: str, columns: Sequence[str], path: str) -> None:
    """COPY a CSV file (no header; as DuckDB writes one) into table's columns, a megabyte at a time."""
    cur = conn.connection.driver_connection.cursor()
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)") as cp, open(path, "rb") as f:
        while data := f.read(1 << 20):
            cp.write(data)


def replace_slice(
    conn: sa.Connection, table: str, key: dict, columns: Sequence[str], rows: Iterable[Sequence], copy=copy_rows
) -> int:
    """Delete the slice ``key`` (e.g. lot_id, run_id, entity) of table and write rows in its place.

    rows hold values for ``columns``; key columns are prepended to each row. copy: copy_rows, or
    copy_csv_rows for rows of arrays.
    """
    where = " AND ".join(f"{k} = :{k}" for k in key)
    conn.execute(sa.text(f"DELETE FROM {table} WHERE {where}"), key)
    return append_slice(conn, table, key, columns, rows, copy)


def append_slice(conn: sa.Connection, table: str, key: dict, columns: Sequence[str], rows: Iterable[Sequence],
                 copy=copy_rows) -> int:  # noqa: ANN001
    """Write more rows into the slice ``key`` (a stage writing batch by batch after replace_slice)."""
    key_values = tuple(key.values())
    return copy(conn, table, (*key, *columns), (key_values + tuple(r) for r in rows))


def create_database_if_missing(url: str) -> None:
    """Create the database named in url, connecting to the server's 'postgres' db."""
    u = sa.engine.make_url(url)
    admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": u.database}).first()
        if not exists:
            conn.exec_driver_sql(f'CREATE DATABASE "{u.database}"')
    admin.dispose()


@contextmanager
def set_wise(conn: sa.Connection) -> Iterator[None]:
    """Hash joins for statements that join whole slices: the slices were just written, their statistics
    say one row, and nested loops over them turn quadratic (24k accounts: 174 s instead of 0.2 s)."""
    conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
    try:
        yield
    finally:
        conn.exec_driver_sql("SET LOCAL enable_nestloop = on")
