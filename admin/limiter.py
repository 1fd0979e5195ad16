"""Flask-Limiter with counters shared by every paydesk process.

Storage: ``RATELIMIT_STORAGE_URL`` when it is set (``redis://host:6379/0`` and the like, any
URI the ``limits`` package knows), otherwise :class:`SQLStorage`, which keeps fixed-window
counters in this app's database (table ``limiter_counter``), so gunicorn workers, several
machines and a restart all see the same counts. Per-process memory is never used.

Each app gets its own ``Limiter`` (``init_limiter``); views are limited with
``limit_view(app, endpoint, ...)`` when their blueprint is registered, so two apps in one
process (tests) never share a storage object by accident. A limit that must only count some
requests (those that passed a check first) is spent inside the view with :func:`spend`; inside
:func:`counted_in_session` the SQL counters are written in ``db.session``'s transaction instead of their own
(the caller commits them together with what it wrote: one transaction where there were two). A view limited
with ``limit_view(..., with_view=True)`` has its counter written that way too, in the transaction its first
commit ends (see :func:`limit_view`).

Every per-client limit counts a client by :func:`network_of` its address: an IPv4 address
alone, an IPv6 address by its /64 (one home, or one server, has a whole /64 and could otherwise
take a fresh budget per address).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RequestLimit
from limits import parse_many
from limits.storage import Storage
from sqlalchemy import bindparam, case, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from admin.dbutil import immediate
from admin.extensions import db
from admin.models import LimiterCounter

SQL_SCHEME = "paydesk-sql"
_PURGE_EVERY = 500  # increments between deletions of expired counters
_IN_SESSION: ContextVar[bool] = ContextVar("paydesk_limiter_in_session", default=False)


@contextmanager
def counted_in_session() -> Iterator[None]:
    """Within it, :class:`SQLStorage` counts (and reads counts) on ``db.session``'s connection, in its
    transaction: the increment is committed, or rolled back, with what the caller writes beside it (a
    counter in Redis is not transactional and is counted as always)."""
    token = _IN_SESSION.set(True)
    try:
        yield
    finally:
        _IN_SESSION.reset(token)


def client_ip() -> str:
    """The client's address as paydesk sees it (``TRUSTED_PROXIES`` decides how far X-Forwarded-For is trusted)."""
    return request.remote_addr or "unknown"


def network_of(addr: str | None) -> str:
    """What a per-client limit counts: an IPv4 address as it is, an IPv6 address by its /64
    (``2001:db8:1:2::/64``; an IPv4-mapped one as its IPv4 address). Anything else as given."""
    text = (addr or "").strip()
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # a zone ("fe80::1%eth0") names no other host
    except ValueError:
        return text[:64] or "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def client_network() -> str:
    """:func:`network_of` the client's address: the key of every per-client limit."""
    return network_of(client_ip())


def wait_words(seconds: float) -> str:
    """'1 minute', '25 minutes', '2 hours': how long a refused client waits, rounded up, for people."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes <= 90:
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    hours = math.ceil(minutes / 60)
    return f"{hours} hours"


class SQLStorage(Storage):
    """``limits`` storage in the app's SQL database: one row per key, fixed windows.

    Each increment is one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` on its own
    connection and transaction (SQLite 3.35+ and PostgreSQL), so concurrent processes
    never lose a hit and the caller's session is not touched. On PostgreSQL the statement
    runs in autocommit on an UNLOGGED table (see ``LimiterCounter``): one round trip and no
    disk flush per hit. Inside :func:`counted_in_session` the statement runs in the session's transaction.
    """

    STORAGE_SCHEME = [SQL_SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._calls = itertools.count(1)

    @property
    def base_exceptions(self):
        return SQLAlchemyError

    @staticmethod
    def _engine():
        return db.engine  # the current app's: the storage object holds no connection of its own

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        table = LimiterCounter.__table__
        engine = self._engine()
        stmt = _upsert(engine.dialect.name)
        params = {"key": key, "amount": amount, "expires": now + expiry, "now": now}
        if _IN_SESSION.get():  # committed by the caller, with its own writes
            conn = db.session.connection()
            value = conn.execute(stmt, params).scalar_one()
            if next(self._calls) % _PURGE_EVERY == 0:
                conn.execute(delete(table).where(table.c.expires_at < now - 60))
        elif engine.dialect.name == "postgresql":
            # One atomic statement in autocommit on an UNLOGGED table: one round trip, no WAL flush.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                value = conn.execute(stmt, params).scalar_one()
                if next(self._calls) % _PURGE_EVERY == 0:
                    conn.execute(delete(table).where(table.c.expires_at < now - 60))
        else:
            with engine.begin() as conn:
                value = conn.execute(stmt, params).scalar_one()
                if next(self._calls) % _PURGE_EVERY == 0:
                    conn.execute(delete(table).where(table.c.expires_at < now - 60))
        return int(value)

    def _read(self, stmt):
        """One value, read where :meth:`incr` writes (the session's transaction inside counted_in_session)."""
        if _IN_SESSION.get():
            return db.session.connection().execute(stmt).scalar()
        with self._engine().connect() as conn:
            return conn.execute(stmt).scalar()

    def get(self, key: str) -> int:
        table = LimiterCounter.__table__
        value = self._read(
            select(table.c["count"]).where(table.c.key == key, table.c.expires_at > time.time())
        )
        return int(value or 0)

    def get_expiry(self, key: str) -> float:
        table = LimiterCounter.__table__
        value = self._read(select(table.c.expires_at).where(table.c.key == key))
        return float(value) if value and value > time.time() else time.time()

    def check(self) -> bool:
        try:
            with self._engine().connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        with self._engine().begin() as conn:
            return conn.execute(delete(LimiterCounter.__table__)).rowcount

    def clear(self, key: str) -> None:
        with self._engine().begin() as conn:
            conn.execute(delete(LimiterCounter.__table__).where(LimiterCounter.__table__.c.key == key))


def purge_counters(now: float | None = None) -> int:
    """Delete ``limiter_counter`` rows whose window ended over a minute ago (the worker, every few minutes;
    busy sites also purge while counting). Nothing to do when the counters live in Redis."""
    table = LimiterCounter.__table__
    with db.engine.begin() as conn:
        return conn.execute(delete(table).where(table.c.expires_at < (now or time.time()) - 60)).rowcount or 0


_UPSERTS: dict[str, object] = {}


def _upsert(dialect: str):
    """INSERT ... ON CONFLICT DO UPDATE ... RETURNING count, built once per dialect (bound parameters)."""
    stmt = _UPSERTS.get(dialect)
    if stmt is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        table = LimiterCounter.__table__
        ins = insert(table).values(
            key=bindparam("key"), count=bindparam("amount"), expires_at=bindparam("expires")
        )
        expired = table.c.expires_at <= bindparam("now")  # an ended window starts again
        stmt = _UPSERTS[dialect] = ins.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": case(
                    (expired, ins.excluded["count"]), else_=table.c["count"] + ins.excluded["count"]
                ),
                "expires_at": case((expired, ins.excluded.expires_at), else_=table.c.expires_at),
            },
        ).returning(table.c["count"])
    return stmt


def init_limiter(app: Flask) -> Limiter:
    """This app's Limiter, with the shared storage described above."""
    # Its INFO line per breach repeats paydesk's own refusal log line (admin.services.donations.guard).
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    storage = app.config.get("RATELIMIT_STORAGE_URL") or f"{SQL_SCHEME}://"
    limiter = Limiter(
        key_func=client_ip,
        storage_uri=storage,
        strategy="fixed-window",
        key_prefix="paydesk",
        headers_enabled=False,
    )
    limiter.init_app(app)
    app.extensions["paydesk_limiter"] = limiter
    return limiter


def spend(limit: str, key: str, *, scope: str) -> int:
    """Count one hit of ``key`` against ``limit`` ("120 per minute", several separated by ";"), in the same
    storage as the views' limits. Returns 0 when every limit still allows it, else the seconds until the
    limit that refused it allows another."""
    strategy = current_app.extensions["paydesk_limiter"].limiter
    for item in parse_many(limit):
        if not strategy.hit(item, scope, key):
            reset_at = strategy.get_window_stats(item, scope, key).reset_time
            return max(1, math.ceil(reset_at - time.time()))
    return 0


def retry_after(limit: RequestLimit) -> int:
    """Seconds until the limit that refused a request allows another (what a breach handler says)."""
    return max(1, math.ceil(limit.window[0] - time.time()))


def limit_view(
    app: Flask,
    endpoint: str,
    limit: Callable[[], str],
    *,
    key_func: Callable[[], str],
    scope: str,
    on_breach: Callable[[RequestLimit], Response | None],
    exempt_when: Callable[[], bool] | None = None,
    with_view: bool = False,
) -> None:
    """Wrap the view of ``endpoint`` in a limit shared by every view given the same ``scope``.

    ``with_view``: the SQL counter is written in ``db.session``'s transaction, begun as a writer before the
    limit is checked, and committed with whatever the view writes until its first commit (a payment request:
    the counter, the form's read, the spent token and the form's counter in one transaction, where there
    were three). An answer given before that (a refusal by the limit, a 404, an early "invalid") commits the
    counter alone when the view returns; an unexpected error rolls it back with the rest. Only for a view
    that commits before it waits on anything (Stripe): the write lock is held until then."""
    limiter: Limiter = app.extensions["paydesk_limiter"]
    decorate = limiter.shared_limit(
        limit, scope=scope, key_func=key_func, on_breach=on_breach, exempt_when=exempt_when
    )
    view = decorate(app.view_functions[endpoint])
    # The decorator keeps the view's signature, but Flask types a view as "sync or async" and mypy joins
    # that union into one callable that matches neither.
    app.view_functions[endpoint] = _counted_with(view) if with_view else view  # type: ignore[assignment]


def _counted_with(view: Callable[..., Any]) -> Callable[..., Any]:
    """``view`` (a limited one) with its SQL counter in the transaction its first commit ends: see
    :func:`limit_view`'s ``with_view``."""

    @wraps(view)
    def counted(*args: Any, **kwargs: Any) -> Any:
        immediate()
        first = db.session().get_transaction()
        token = _IN_SESSION.set(True)
        try:
            answer = view(*args, **kwargs)
        except HTTPException:  # the limit's refusal, a 404: answers, not failures
            _end(first)
            raise
        finally:
            _IN_SESSION.reset(token)
        _end(first)
        return answer

    return counted


def _end(first: Any) -> None:
    """Commit the transaction :func:`_counted_with` began when the view left it open."""
    if first is not None and db.session().get_transaction() is first:
        db.session.commit()
