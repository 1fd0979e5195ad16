"""What kind of failure an exception is: worth retrying later, or not; the database gone, or a bug.
Shared by the worker, the outbox and the web error handlers."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from admin.crypto import SecretDecryptError
from admin.errors import StripeFailure
from admin.stripe_gateway import GatewayError


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, GatewayError | StripeFailure):
        return exc.transient
    if isinstance(exc, SecretDecryptError):
        return True  # a wrong PAYDESK_ENCRYPTION_KEY: retried with backoff once it is fixed
    if isinstance(exc, IntegrityError):
        return True  # a concurrent event created the same record first: run again and find it
    if isinstance(exc, OperationalError):
        return True  # database busy, deadlock detected, connection lost
    if isinstance(exc, OSError):
        return True  # SMTP server or disk not reachable right now
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


# SQLSTATE classes that mean "the server is not there for you right now": 08 connection exception,
# 57P01-57P05 admin/crash shutdown, cannot connect now, idle session timeout. 53 insufficient resources
# (too many connections, out of memory or disk).
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53")
# SQLite primary result codes with the same meaning: BUSY and LOCKED (past the busy timeout), NOMEM, IOERR,
# FULL, CANTOPEN, PROTOCOL. A wrong statement is SQLITE_ERROR (1).
_UNAVAILABLE_SQLITE = {5, 6, 7, 10, 13, 14, 15}


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or is not answering (stopped, restarting, network, locked for good),
    as opposed to a statement that is wrong: worth a 503 and a retry, not a bug report."""
    if isinstance(exc, PoolTimeoutError):
        return True  # every pooled connection busy for the whole pool timeout
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True  # the connection broke under the statement (server gone, connection closed)
    if not isinstance(exc, OperationalError):
        return False
    sqlite_code = getattr(exc.orig, "sqlite_errorcode", None)
    if sqlite_code is not None:  # SQLite reports a wrong statement as an OperationalError too
        return sqlite_code & 0xFF in _UNAVAILABLE_SQLITE
    code = getattr(exc.orig, "sqlstate", None)  # psycopg 3
    if code is None:
        return True  # refused, reset, timed out: the server never answered the statement
    return str(code).startswith(_UNAVAILABLE_SQLSTATES)


def describe(exc: Exception) -> str:
    """One line for staff: where it failed and why (with Stripe's request id when there is one)."""
    if isinstance(exc, GatewayError):
        return f"Stripe: {exc}"
    if isinstance(exc, StripeFailure):
        return f"Stripe: {exc.detail}"
    if isinstance(exc, DBAPIError):
        first = (str(exc.orig).strip().splitlines() or [""])[0]
        return f"database: {type(exc.orig).__name__}: {first[:500]}"
    return f"{type(exc).__name__}: {exc}"


def retry_delay(attempts: int, *, conflict: bool = False, base: float | None = None) -> timedelta:
    """How long a failed queued item (an event, an outbox task, a job's unit) waits before its next try: the
    one backoff of every queue. ``base`` (default ``WORKER_BACKOFF_BASE``) doubled per attempt made, at most
    ``WORKER_BACKOFF_MAX``; a unique-key race with a concurrent worker (``conflict``) is tried ten times sooner."""
    cfg = current_app.config
    base = (cfg["WORKER_BACKOFF_BASE"] if base is None else base) / (10 if conflict else 1)
    return timedelta(seconds=min(cfg["WORKER_BACKOFF_MAX"], base * 2 ** max(0, attempts - 1)))
