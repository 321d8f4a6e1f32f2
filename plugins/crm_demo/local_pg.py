"""Find a PostgreSQL server for the demo and the tests, or start an embedded one.

Order: CRM_PG_URL (a server URL, no database), then the machine's server on
127.0.0.1:5432 when allowed and reachable, then an embedded server (pgserver,
from PyPI) in .pgdata/ that keeps running for later commands.
"""

from __future__ import annotations

import os
import socket
import sys

from crm_migration.model.settings import REPO_ROOT


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def server_url(allow_local: bool = True) -> str:
    """postgresql://... URL of a server; append a database name with database_url()."""
    if os.environ.get("CRM_PG_URL"):
        return os.environ["CRM_PG_URL"]
    if allow_local and _reachable("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    import pgserver

    srv = pgserver.get_server(str(REPO_ROOT / ".pgdata"), cleanup_mode=None)
    return srv.get_uri()


def database_url(server: str, database: str) -> str:
    """The same server, another database (keeps a ?host=/socket/dir query)."""
    base, _, query = server.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + database
    return f"{base}?{query}" if query else base


if __name__ == "__main__":
    # python -m crm_demo.local_pg [--embedded] : print the server URL
    print(server_url(allow_local="--embedded" not in sys.argv))
