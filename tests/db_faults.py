"""Database faults for tests: in-process (any backend), and a real PostgreSQL cluster of their own to restart.

``DatabaseOutage(engine)`` makes the database "go away" inside the test process: while it is down,
every statement (and every COMMIT) fails with the driver's own ``OperationalError``, the way a stopped
or restarting server makes them fail; SQLAlchemy wraps it as it would the real one.

``ThrowawayCluster`` is a PostgreSQL cluster made for the occasion with ``pg_createcluster`` (root only)
on a free port, restarted and stopped for real, and dropped afterwards. The main cluster on port 5432
is never touched (other sessions' tests run against it).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import uuid

from sqlalchemy import event


class DatabaseOutage:
    """In-process database outage on ``engine``: ``down()`` / ``up()``, or ``fail_next(n)`` statements,
    or ``fail_commits(n)`` COMMITs. ``failures`` counts what failed. Use as a context manager."""

    def __init__(self, engine):
        self.engine = engine
        self.is_down = False
        self.failures = 0
        self._next = 0
        self._commits = 0
        self._lock = threading.Lock()
        self._dialect = engine.dialect
        self._real_commit = engine.dialect.do_commit

    def __enter__(self) -> DatabaseOutage:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        self._dialect.do_commit = self._commit
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        self._dialect.do_commit = self._real_commit

    def down(self) -> None:
        self.is_down = True

    def up(self) -> None:
        self.is_down = False
        with self._lock:
            self._next = self._commits = 0

    def fail_next(self, n: int) -> None:
        """The next ``n`` statements fail, then the database is back."""
        with self._lock:
            self._next = n

    def fail_commits(self, n: int) -> None:
        """The next ``n`` COMMITs fail (the transaction is left open, as when the server dies under it)."""
        with self._lock:
            self._commits = n

    def error(self) -> Exception:
        if self._dialect.name == "sqlite":
            err = sqlite3.OperationalError("unable to open database file")
            err.sqlite_errorcode, err.sqlite_errorname = sqlite3.SQLITE_CANTOPEN, "SQLITE_CANTOPEN"
            return err
        import psycopg

        return psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")

    def _take(self, kind: str) -> bool:
        with self._lock:
            if self.is_down:
                self.failures += 1
                return True
            left = self._next if kind == "statement" else self._commits
            if left <= 0:
                return False
            if kind == "statement":
                self._next -= 1
            else:
                self._commits -= 1
            self.failures += 1
            return True

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        if self._take("statement"):
            raise self.error()

    def _commit(self, dbapi_connection):
        if self._take("commit"):
            raise self.error()
        return self._real_commit(dbapi_connection)


# -- a real PostgreSQL cluster of our own ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_unavailable() -> str | None:
    """Why no throwaway cluster can be made here (None when one can)."""
    if os.environ.get("PAYDESK_TEST_PG_RESTART", "1") == "0":
        return "PAYDESK_TEST_PG_RESTART=0"
    if os.geteuid() != 0:
        return "not root (pg_createcluster and pg_ctlcluster need root)"
    missing = [t for t in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster") if not shutil.which(t)]
    if missing:
        return f"{', '.join(missing)} not installed (Debian's postgresql-common)"
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        return "no PostgreSQL server binaries under /usr/lib/postgresql"
    return None


class ThrowawayCluster:
    """``pg_createcluster <version> <name> --port <free port>`` with trust authentication on loopback;
    ``restart()``, ``stop()``, ``start()`` with ``pg_ctlcluster``; ``drop()`` removes it entirely."""

    def __init__(self, name: str | None = None, port: int | None = None):
        self.version = max(
            (p.split("/")[4] for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")),
            key=lambda v: [int(x) for x in v.split(".") if x.isdigit()],
        )
        self.name = name or f"paydesk_faults_{os.getpid()}_{uuid.uuid4().hex[:4]}"
        self.port = port or _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
        if res.returncode:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({res.returncode}): {(res.stderr or res.stdout).strip()}"
            )

    def create(self) -> ThrowawayCluster:
        # fsync off: a throwaway cluster, and restarts (a shutdown checkpoint) stay quick on a busy machine
        try:
            self._run(
                "pg_createcluster",
                self.version,
                self.name,
                "--port",
                str(self.port),
                "--start-conf",
                "manual",
                "-o",
                "fsync=off",
                "-o",
                "max_connections=200",
                "--start",
                "--",
                "--auth=trust",
            )
        except Exception:
            subprocess.run(
                ["pg_dropcluster", "--stop", self.version, self.name], capture_output=True, timeout=120
            )
            raise
        return self

    def ctl(self, action: str) -> None:
        self._run("pg_ctlcluster", self.version, self.name, action)

    def restart(self) -> None:
        self.ctl("restart")

    def stop(self) -> None:
        self.ctl("stop")

    def start(self) -> None:
        self.ctl("start")

    def drop(self) -> None:
        self._run("pg_dropcluster", "--stop", self.version, self.name)

    def create_database(self, dbname: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        return self.url.rsplit("/", 1)[0] + "/" + dbname
