"""Checksums by key range, computed where the data is (data-diff's idea): the cost of comparing the legacy CRM
with what the migration knows grows with what changed, not with the size of the CRM.

A key range ("bucket") is the first hex characters of md5 of a legacy id's text (source/legacy.BUCKET_CHARS:
65,536 ranges). Its checksum is (rows, sum of a 60-bit number taken from md5(id ':' row hash)), computed by the
legacy database in its own SQL (PostgreSQL, MySQL/MariaDB: the row hash is the extract's own, legacy.sql_row_hash)
and by the target over the versions it accounts for. Only the ranges whose checksums differ are read and compared
row by row; every other range holds exactly the versions the target accounts for (up to a collision of two
60-bit sums of md5s with equal row counts).

Three users:

- the freeze (checks/reconcile): the legacy rows of every scope against the versions the target accounts for
  (checks/known_versions.sql, classify.sql's order): an equal range's rows take their known fate;
- a delta comparing hashes (no usable date): only rows of ranges unlike the versions applied are read;
- hard deletes: the checksums of every legacy id, kept by each delta's load (crm_migration.key_range_sums,
  in its transaction) and compared at the next; ids are read only in ranges that changed since, and in the
  ranges of ids the run itself loads. A lot's load or a rollback forgets them (the next delta reads every id);
- relations (stages/relations): the checksums of every legacy link row by its key's range, kept by each sync; a
  delta syncs only the keys of ranges that changed since and those of the rows it loads.

A file source or another dialect is read whole, as before (None from these functions).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa

from crm_migration.model.config import LotConfig
from crm_migration.model.db import copy_rows, engine, sql_text
from crm_migration.model.spec import spec
from crm_migration.rules.transform import TARGET_TABLE
from crm_migration.source.legacy import (BUCKET_CHARS, bucket_of, extract_sql, hashes_in_sql, in_buckets,
                                         link_values_sql, pg_bucket, sql_bucket, sql_row_hash)
from crm_migration.source.sources import is_file_source, legacy_ids, legacy_ids_sql, relation_select

log = logging.getLogger(__name__)

Sums = dict[str, tuple[int, int]]  # key range -> (rows, sum of marks)
BUCKETS = 16 ** BUCKET_CHARS
FULL_READ_SHARE = 0.25  # more ranges differ than this share: read every row (the filter would save little)
LEGACY_PARTS = 2  # slices of the key ranges the legacy database checksums side by side


def _mark(conn: sa.Connection, id_sql: str, hash_sql: str) -> str:
    """A row's 60-bit number: md5(id ':' hash), in the connection's SQL."""
    if conn.dialect.name == "postgresql":
        digest = f"md5(CAST({id_sql} AS text) || ':' || {hash_sql})"
        return f"CAST(CAST('x' || substr({digest}, 1, 15) AS bit(60)) AS bigint)"
    return f"CAST(CONV(LEFT(MD5(CONCAT(CAST({id_sql} AS CHAR), ':', {hash_sql})), 15), 16, 10) AS UNSIGNED)"


def _sums(conn: sa.Connection, query: str, binds: dict, hash_sql: str, part: tuple[int, int] = (0, 1)) -> Sums:
    """The checksums of the query's rows (aliased y); part (i, n): only the i-th of n slices of the key ranges."""
    bucket = sql_bucket(conn, "y.id")
    i, n = part
    low, high = f"{i * BUCKETS // n:0{BUCKET_CHARS}x}", f"{(i + 1) * BUCKETS // n:0{BUCKET_CHARS}x}"
    within = (f" AND {bucket} >= '{low}'" if i else "") + (f" AND {bucket} < '{high}'" if i + 1 < n else "")
    rows = conn.execute(sa.text(f"SELECT {bucket} AS b, count(*), sum({_mark(conn, 'y.id', hash_sql)})"
                                f" FROM ({query}) y WHERE y.id IS NOT NULL{within} GROUP BY 1"), binds)
    return {b: (int(n), int(s)) for b, n, s in rows}


def _legacy_sums(legacy_url: str, query: str, binds: dict) -> Sums | None:
    """The checksums of a legacy query's rows, LEGACY_PARTS slices of the key ranges side by side, each on its own
    connection (the query's joins and subqueries cost the legacy database per row: its cores share them)."""
    with engine(legacy_url).connect() as conn:
        if not hashes_in_sql(conn):
            return None
        hash_sql = sql_row_hash(conn, query, binds)

    def one(i: int) -> Sums:
        with engine(legacy_url).connect() as conn:
            return _sums(conn, query, binds, hash_sql, (i, LEGACY_PARTS))

    with ThreadPoolExecutor(LEGACY_PARTS, thread_name_prefix="checksums") as pool:
        return {b: v for part in pool.map(one, range(LEGACY_PARTS)) for b, v in part.items()}


def differing(a: Sums, b: Sums) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def worth_it(diff: set[str]) -> bool:
    """Whether reading only the differing ranges is worth it (few enough of them)."""
    return len(diff) <= FULL_READ_SHARE * BUCKETS


def legacy_sums(legacy_url: str, lot: LotConfig, entity: str, windows: dict) -> Sums | None:
    """The checksums of the entity's legacy rows in the scopes of windows (every row of each), by the legacy
    database; None for a source that does not hash (files, other dialects)."""
    if is_file_source(legacy_url):
        return None
    query, binds = extract_sql(lot, entity, windows, whole_scopes=True)
    return _legacy_sums(legacy_url, query, binds)


def keep_known_versions(conn: sa.Connection, entity: str, freeze: bool) -> None:
    """pg_temp.known_version (legacy_id, row_hash, fate, bucket): per legacy id the version the target accounts
    for (freeze: with the fate classify.sql would give it; otherwise the version last applied)."""
    conn.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.known_version")
    query = sql_text("checks/known_versions.sql" if freeze else "stages/applied_versions.sql",
                     target=TARGET_TABLE[entity])
    conn.execute(sa.text(f"CREATE TEMP TABLE known_version ON COMMIT DROP AS SELECT k.*,"
                         f" {pg_bucket('k.legacy_id')} AS bucket FROM ({query}) k"), {"e": entity})
    conn.exec_driver_sql("ANALYZE pg_temp.known_version")


def ranges_to_read(conn: sa.Connection, legacy_url: str, lot: LotConfig, entity: str, windows: dict,
                   freeze: bool) -> tuple[set[str] | None, int]:
    """(the key ranges whose legacy rows differ from the versions the target accounts for, the legacy rows of the
    other ranges); keeps pg_temp.known_version on conn, whatever the answer. None: read every row (a source that
    does not hash, or most ranges differ)."""
    keep_known_versions(conn, entity, freeze)
    legacy = legacy_sums(legacy_url, lot, entity, windows)
    if legacy is None:
        return None, 0
    known = _sums(conn, "SELECT legacy_id AS id, row_hash FROM pg_temp.known_version", {}, "y.row_hash")
    diff = differing(legacy, known)
    few = worth_it(diff)
    log.info("%s: %d of %d key ranges differ from the versions the target accounts for (%d legacy rows in all)%s",
             entity, len(diff), len(legacy.keys() | known.keys()), sum(n for n, _ in legacy.values()),
             "" if few else ": every row read")
    if not few:
        return None, 0
    return diff, sum(n for b, (n, _) in legacy.items() if b not in diff)


# --- hard deletes: the checksums of every legacy id, kept by each delta ----------------------------------------

def legacy_id_sums(legacy_url: str, entity: str) -> Sums | None:
    """The checksums of every id of the entity's legacy tables (no scope: a row gone from the tables is deleted,
    a row out of every scope is not); None where the source does not hash or the ids are derived values."""
    es = spec(entity)
    if is_file_source(legacy_url) or es.derived_from is not None:
        return None
    with engine(legacy_url).connect() as conn:
        if not hashes_in_sql(conn):
            return None
        return _sums(conn, legacy_ids_sql(entity), {}, "''")  # ids alone: cheap, one query


@dataclass
class Presence:
    """Which legacy ids the legacy tables hold: every id of the ranges read (checked; None: every range); an id
    of another range is there (its range holds the ids it held at the last delta)."""
    checked: set[str] | None
    ids: set[str]
    sums: Sums | None = None  # to keep for the next delta (the load's transaction)

    def __contains__(self, legacy_id: str) -> bool:
        if self.checked is not None and bucket_of(legacy_id) not in self.checked:
            return True
        return legacy_id in self.ids


def presence(url: str, legacy_url: str, entity: str, also: set[str] = frozenset()) -> Presence:
    """The legacy ids present now, read only in the key ranges whose id checksums changed since the last delta's
    load and in the ranges of `also` (ids this run loads: they may have come and gone since)."""
    sums = legacy_id_sums(legacy_url, entity)
    if sums is None:
        return Presence(None, legacy_ids(legacy_url, entity))
    with engine(url).connect() as conn:
        kept = kept_sums(conn, f"ids:{entity}")
    diff = differing(sums, kept) | {bucket_of(i) for i in also}
    if not kept or not worth_it(diff):
        log.info("%s: every legacy id read (%s)", entity, "no checksums kept by a delta yet" if not kept
                 else f"{len(diff)} key ranges changed")
        return Presence(None, legacy_ids(legacy_url, entity), sums)
    ids = legacy_ids(legacy_url, entity, diff)
    log.info("%s: legacy ids read in %d of %d key ranges (changed since the last delta, or loaded by this run):"
             " %d ids", entity, len(diff), len(sums), len(ids))
    return Presence(diff, ids, sums)


def kept_sums(conn: sa.Connection, what: str) -> Sums:
    return {b: (int(n), int(s)) for b, n, s in conn.execute(sa.text(
        "SELECT bucket, n, s FROM crm_migration.key_range_sums WHERE what = :w"), {"w": what})}


def keep_sums(conn: sa.Connection, what: str, sums: Sums | None) -> None:
    """In the transaction that brought the target to them: the checksums the next run compares with (only the
    ranges that changed are written)."""
    if sums is None:
        return
    changed = differing(sums, kept_sums(conn, what))
    if not changed:
        return
    conn.execute(sa.text("DELETE FROM crm_migration.key_range_sums WHERE what = :w AND bucket = ANY(:b)"),
                 {"w": what, "b": sorted(changed)})
    copy_rows(conn, "crm_migration.key_range_sums", ("what", "bucket", "n", "s"),
              ((what, b, *sums[b]) for b in sorted(changed) if b in sums))


def forget_sums(conn: sa.Connection, what: str) -> None:
    conn.execute(sa.text("DELETE FROM crm_migration.key_range_sums WHERE what = :w"), {"w": what})


def keep_id_sums(conn: sa.Connection, entity: str, sums: Sums | None) -> None:
    """In the delta load's transaction: the id checksums the next delta compares with."""
    keep_sums(conn, f"ids:{entity}", sums)


def forget_id_sums(conn: sa.Connection, entity: str) -> None:
    """A lot's load or a rollback changes what the target holds outside the deltas: the next delta reads every id
    and compares every row's link-table parents."""
    forget_sums(conn, f"ids:{entity}")
    forget_sums(conn, f"through:{entity}")


# --- link-table references (config/entities: through): the parent each row's link picks, by key range ----------

def links_changed(url: str, legacy_url: str, entity: str, run: str) -> set[str] | None:
    """The key ranges whose rows' link-table parents changed since the last delta's load (None: compare every
    row); the checksums now are kept as pending for this run (`lot/run`), its load keeps them (keep_pending)."""
    if is_file_source(legacy_url):
        return None
    sums = _legacy_sums(legacy_url, link_values_sql(entity), {})
    if sums is None:
        return None
    with engine(url).begin() as conn:
        kept = kept_sums(conn, f"through:{entity}")
        diff = differing(sums, kept)  # pending: the changed ranges' new checksums, (0, 0) for a range now empty
        forget_sums(conn, f"through:{entity}@{run}")
        keep_sums(conn, f"through:{entity}@{run}", {b: sums.get(b, (0, 0)) for b in diff})
    return diff if kept and worth_it(diff) else None


def keep_pending(conn: sa.Connection, entity: str, run: str) -> None:
    """In the delta load's transaction: the link-table checksums its extract read become the kept ones (the
    changed ranges replaced)."""
    kept, pending = f"through:{entity}", f"through:{entity}@{run}"
    conn.execute(sa.text("DELETE FROM crm_migration.key_range_sums k USING crm_migration.key_range_sums p"
                         " WHERE k.what = :k AND p.what = :p AND p.bucket = k.bucket"), {"k": kept, "p": pending})
    conn.execute(sa.text("UPDATE crm_migration.key_range_sums SET what = :k WHERE what = :p AND n > 0"),
                 {"k": kept, "p": pending})
    conn.execute(sa.text("DELETE FROM crm_migration.key_range_sums WHERE what LIKE :p"),
                 {"p": f"through:{entity}@%"})  # the empty ranges, and other runs' left behind (failed before a load)


# --- relations: the checksums of every legacy link row by its key's range ---------------------------------------

def links_key(rel) -> str:  # noqa: ANN001 - RelationSpec
    """What a relation's link checksums are kept under (crm_migration.key_range_sums)."""
    return f"links:{rel.target.table}"


def link_sums(legacy_url: str, rel) -> Sums | None:  # noqa: ANN001 - RelationSpec
    """The checksums of a relation's legacy link rows (live or not) by their key's range; None where the source
    does not hash."""
    if is_file_source(legacy_url):
        return None
    return _legacy_sums(legacy_url, f"SELECT r.k AS id, r.* FROM ({relation_select(rel)}) r", {})


def link_keys(legacy_url: str, rel, buckets: set[str], values: list[str]) -> set[str]:  # noqa: ANN001
    """The keys of a relation's legacy link rows (live or not) in those key ranges or with one of those values."""
    query = relation_select(rel)
    out: set[str] = set()
    with engine(legacy_url).connect() as conn:
        if buckets:
            out |= {str(r[0]) for r in conn.execute(sa.text(
                f"SELECT DISTINCT y.k FROM ({query}) y WHERE {in_buckets(conn, 'y.k', buckets)}"))}
        some = sa.text(f"SELECT DISTINCT y.k FROM ({query}) y WHERE y.v IN :v").bindparams(
            sa.bindparam("v", expanding=True))
        for start in range(0, len(values), 1000):
            out |= {str(r[0]) for r in conn.execute(some, {"v": values[start:start + 1000]})}
    return out - {"None", ""}
