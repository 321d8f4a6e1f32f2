"""Which failures are worth a retry: a lost or refused connection, a server restarting, a deadlock.
Everything else (a missing database or column, a syntax error, bad data) fails at once with its
message, whatever the driver calls it: psycopg and PyMySQL both raise OperationalError for an
unknown database, so the exception class alone cannot tell."""

from __future__ import annotations

# SQLSTATE: connection exceptions, insufficient resources (too many connections), operator
# intervention (admin/crash shutdown, cannot connect now), serialization failure, deadlock.
_TRANSIENT_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03", "40001", "40P01")
# MySQL / MariaDB: too many connections, server shutdown, lock wait timeout, deadlock, can't connect
# (socket, TCP), server gone away, lost connection during query.
_TRANSIENT_MYSQL = frozenset({1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 2055})
# A connection failure without a SQLSTATE (libpq reports them as text): these will not heal by waiting.
_PERMANENT_TEXT = ("does not exist", "authentication failed", "no pg_hba.conf entry", "permission denied",
                   "invalid dsn", "could not translate host name")
_TRANSIENT_TEXT = ("connection refused", "connection reset", "server closed the connection", "timeout",
                   "timed out", "terminating connection", "could not connect", "connection is lost",
                   "the database system is starting up", "the database system is shutting down")


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's first line (its type's name when it has no message): what on-call reads first."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """True when a retry may succeed: the connection was lost or refused, or the server asked us to."""
    for e in _chain(exc):
        if getattr(e, "connection_invalidated", False):
            return True
        sqlstate = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)  # psycopg 3, psycopg2
        if isinstance(sqlstate, str) and sqlstate:
            return sqlstate.startswith(_TRANSIENT_SQLSTATES)
        args = getattr(e, "args", ())
        if args and isinstance(args[0], int) and type(e).__module__.startswith(("pymysql", "MySQLdb")):
            return args[0] in _TRANSIENT_MYSQL
        if type(e).__module__.startswith(("psycopg", "psycopg2")) and type(e).__name__ in (
                "OperationalError", "InterfaceError"):
            text = str(e).lower()
            return not any(p in text for p in _PERMANENT_TEXT)
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
    text = str(exc).lower()
    return not any(p in text for p in _PERMANENT_TEXT) and any(p in text for p in _TRANSIENT_TEXT)
