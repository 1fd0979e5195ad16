"""Small database helpers that must behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import current_app
from sqlalchemy import CursorResult, Result, event, func, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from admin.extensions import db
from admin.failures import database_unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

_INSERT_IGNORE: dict[tuple, Any] = {}
_WROTE = "paydesk_wrote"


@event.listens_for(Session, "after_flush")
def _note_write(session: Session, _ctx: Any) -> None:
    session.info[_WROTE] = True  # flushed changes are invisible to session.dirty, but not gone


@event.listens_for(Session, "after_transaction_end")
def _forget_write(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(_WROTE, None)


# The largest id an Integer primary key holds on every database paydesk runs on (PostgreSQL int4).
MAX_ID = 2**31 - 1


def parse_whole(value: Any, low: int = 1, high: int = MAX_ID) -> int | None:
    """A whole number from user input (URL, form, CLI, metadata) within ``low..high``, or None.

    Only ASCII digits count (``"²".isdigit()`` is true in Python, and ``int()`` reads Arabic-Indic digits),
    no sign, no decimal point; a long string of digits is refused before ``int()`` reads it.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if low <= value <= high else None
    text = value.strip() if isinstance(value, str) else ""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)):
        return None
    number = int(text)
    return number if low <= number <= high else None


def parse_id(value: Any) -> int | None:
    """A database id from user input (URL, CLI, session, Stripe metadata), or None when it cannot be one.

    ASCII digits only, and only values that fit the column (1..MAX_ID), so a lookup never meets an
    OverflowError (SQLite) or a "value out of range" (PostgreSQL).
    """
    return parse_whole(value, 1, MAX_ID)


# PostgreSQL NOTIFY channel: a queued event was stored (an idle worker wakes at once, ``admin.worker.wakeup``).
EVENTS_CHANNEL = "paydesk_events"


def insert_ignore(
    model: Any, values: dict[str, Any], conflict: list[str], *, notify: str | None = None
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when a row was inserted. Does not commit.

    The statement is built once per table, conflict target and dialect and
    run with the values as parameters (building it per call was a third of a
    webhook request's CPU). ``notify``: on PostgreSQL, a row inserted also sends a notification on that
    channel (``pg_notify`` in the same statement: no round trip of its own), delivered at commit.
    """
    dialect = db.session.get_bind().dialect.name
    key = (model, tuple(conflict), dialect, notify)
    stmt = _INSERT_IGNORE.get(key)
    if stmt is None:
        # Core: an ORM-entity insert with params takes the bulk path
        if dialect == "postgresql":
            stmt = postgresql.insert(model.__table__).on_conflict_do_nothing(index_elements=conflict)
        elif dialect == "sqlite":
            stmt = sqlite.insert(model.__table__).on_conflict_do_nothing(index_elements=conflict)
        else:  # pragma: no cover - other databases: a plain insert, conflicts raise
            stmt = insert(model.__table__)
        # rowcount is unreliable here (psycopg reports -1 with RETURNING): ask for a row back.
        returned = [*model.__table__.primary_key.columns]
        if notify and dialect == "postgresql":
            returned.append(func.pg_notify(notify, ""))
        stmt = _INSERT_IGNORE[key] = stmt.returning(*returned)
    return db.session.execute(stmt, values).first() is not None


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE run through the session matched.

    ``Session.execute`` is typed as returning a ``Result``; for those statements it is a ``CursorResult``,
    the one that has ``rowcount``.
    """
    return cast(CursorResult[Any], result).rowcount


LIKE_ESCAPE = "\\"


def like_escaped(text: str) -> str:
    """``text`` inside a LIKE pattern (used with ``escape=LIKE_ESCAPE``): its own ``%``, ``_`` and ``\\``
    match themselves, not any text, any character or an escape."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains_text(col: Any, text: str) -> Any:
    """``col`` contains ``text``, ignoring case, whatever characters ``text`` holds (the one way user text
    reaches a LIKE)."""
    return func.lower(col).like(f"%{like_escaped(text.strip().lower())}%", escape=LIKE_ESCAPE)


def is_postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def any_row(stmt: Any, params: dict[str, Any] | None = None) -> bool:
    """Whether ``stmt`` (a select of one row at most) finds a row, by a plain read: queues are checked this
    way before a writer's transaction is begun, so an idle worker does not take SQLite's write lock three
    times a second. Ends its read transaction when nothing was found."""
    found = db.session.connection().execute(stmt, params).first() is not None
    if not found:
        db.session.rollback()
    return found


def immediate() -> None:
    """Start this session's transaction as a writer (SQLite ``BEGIN IMMEDIATE``; a plain BEGIN elsewhere).

    Call it at a transaction boundary: a read-only transaction still open is
    ended first, so the write lock really is taken up front. A transaction that
    has written anything (pending, or already flushed), or that ``immediate()`` began (a writer from its
    start, e.g. a receipt's read before its ``begin_side_effect``), is left as it is.
    """
    sess = db.session()
    if sess.in_transaction():
        writer = sess.info.get(_WRITER)
        if writer is not None and writer() is sess.get_transaction():
            return
        if not (sess.new or sess.dirty or sess.deleted or sess.info.get(_WROTE)):
            sess.rollback()
    if not sess.in_transaction():
        sess.connection(execution_options={"sqlite_immediate": True})
        sess.info[_WRITER] = weakref.ref(sess.get_transaction())


_WRITER = "paydesk.writer"  # session.info: weakref to the transaction immediate() began


_LOCKED = "paydesk.locked_objects"  # session.info: (weakref to the transaction, advisory lock ids it holds)


def lock_objects(keys: list[str]) -> None:
    """PostgreSQL: hold a transaction-scoped advisory lock on each key, in one statement and in sorted
    order (so two holders cannot deadlock on them). Released at commit or rollback, and when a killed
    worker's connection drops. No-op on SQLite, where a writer holds the whole database anyway."""
    if not keys or not is_postgres():
        return
    ids = {
        int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big", signed=True) for k in keys
    }
    # The keys this transaction holds already (the pipeline locked the event's objects; a record service asks
    # for some of them again) need no second round trip: a transaction-scoped lock is held until its end.
    sess = db.session()
    tx = sess.get_nested_transaction() or sess.get_transaction()  # a savepoint rolled back releases its locks
    held_tx, held = sess.info.get(_LOCKED, (None, set()))
    if tx is None or held_tx is None or held_tx() is not tx:
        held = set()
    wanted = sorted(ids - held)
    if not wanted:
        return
    if tx is not None:
        sess.info[_LOCKED] = (weakref.ref(tx), held | set(wanted))
    sess.connection().execute(_ADVISORY_LOCKS, {"ks": wanted})


_ADVISORY_LOCKS = text(
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ks AS bigint[])) WITH ORDINALITY AS t(k, n) ORDER BY n"
)


def rollback_quietly() -> None:
    """Roll the session back after a failure; a database that is gone cannot make this fail too."""
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection is dead: the pool replaces it on the next checkout
        db.session.close()


def retry_while_unavailable(work: Callable[[], T], *, what: str, until: float | None = None) -> T:
    """Run ``work`` (a short transaction that commits) until it succeeds, while the database is unreachable.

    For what must not be lost when the database goes away at the wrong moment: the record of a receipt
    already sent, claimed events handed back to the queue. Each failed try is rolled back and tried again
    on a fresh connection after a pause (0.05 s, doubling, at most ``DB_RETRY_BACKOFF_MAX``, so the work is
    done within that long of the database's return), for at most ``DB_RETRY_SECONDS`` or until the
    ``time.monotonic()`` deadline ``until``; then the last error is raised. Any other error is raised at once.
    """
    from admin.outage import GRACE_SECONDS, throttled

    cfg = current_app.config
    started = time.monotonic()
    deadline = started + cfg["DB_RETRY_SECONDS"]
    if until is not None:
        deadline = min(deadline, until)
    delay, tries = 0.05, 0
    while True:
        try:
            result = work()
        except Exception as exc:
            rollback_quietly()
            if not database_unavailable(exc) or time.monotonic() + delay > deadline:
                if tries:
                    log.error(
                        "gave up %s after %.1f s: the database is still unavailable",
                        what,
                        time.monotonic() - started,
                    )
                raise
            # One INFO line when it starts (trying again for up to DB_RETRY_SECONDS); an ERROR only once it
            # has lasted outage.GRACE_SECONDS: "database is locked" for 0.1 s is routine on SQLite.
            throttled("database", DATABASE_SUMMARY).retrying(exc, what, started)
            tries += 1
            time.sleep(delay)
            delay = min(delay * 2, cfg["DB_RETRY_BACKOFF_MAX"])
            continue
        if tries:
            took = time.monotonic() - started
            log.log(
                logging.WARNING if took >= GRACE_SECONDS else logging.INFO,
                "database back: %s after %.1f s (%d tries)",
                what,
                took,
                tries + 1,
            )
        return result


DATABASE_SUMMARY = "database unavailable: {n} worker steps failed in the last {seconds} s"


# -- the database paydesk is configured for, as people name it --------------------------------------

UPGRADE_HINT = "run `flask --app wsgi db upgrade`"


def resolve_sqlite_url(url: str, base: str | None = None) -> str:
    """A SQLite URL whose relative file path is made absolute against ``base`` (the current directory),
    as sqlite3 and every other tool read it: ``sqlite:///instance/demo.sqlite3`` run from the project's
    folder is ``<project>/instance/demo.sqlite3``. Other URLs (PostgreSQL, in-memory, ``file:`` URIs,
    absolute paths) are returned as they are."""
    import os

    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite"):
        return url
    parsed = make_url(url)
    path = parsed.database
    if not path or path == ":memory:" or path.startswith("file:") or os.path.isabs(path):
        return url
    return parsed.set(database=os.path.abspath(os.path.join(base or os.getcwd(), path))).render_as_string(
        hide_password=False
    )


def sqlite_file() -> str | None:
    """The file of the configured SQLite database, or None (PostgreSQL, in memory)."""
    from sqlalchemy.engine import make_url

    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    path = url.database if url.get_backend_name() == "sqlite" else None
    return None if not path or path == ":memory:" or path.startswith("file:") else path


def database_name() -> str:
    """The configured database as people name it: a SQLite file's path, a server URL without its password."""
    from sqlalchemy.engine import make_url

    return sqlite_file() or make_url(current_app.config["SQLALCHEMY_DATABASE_URI"]).render_as_string(
        hide_password=True
    ).replace("postgresql+psycopg://", "postgresql://")


def missing_database() -> str | None:
    """Why a command must not run yet: the SQLite file it would read does not exist (and opening it would
    create an empty one). None when there is one, or the database is a server."""
    import os

    path = sqlite_file()
    if path is None or os.path.exists(path):
        return None
    where = f"{path} (PAYDESK_DATABASE_URL)" if current_app.config.get("DATABASE_URL") else path
    if not os.path.isdir(os.path.dirname(path) or "."):
        return f"cannot open the database {where}: the folder {os.path.dirname(path)} does not exist"
    return f"there is no database at {where} yet: {UPGRADE_HINT} to create it"


def database_problem(exc: BaseException) -> str | None:
    """One line for a person when ``exc`` means the database cannot be used at all (it cannot be opened or
    reached, or it has no tables yet); None for any other error."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return None
    first = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0][:300]
    try:
        where = database_name()
    except RuntimeError:  # no application context
        where = "configured by PAYDESK_DATABASE_URL"
    if getattr(exc.orig, "sqlstate", None) == "42P01" or first.startswith("no such table"):
        return f"the database {where} has no paydesk tables yet: {UPGRADE_HINT}"
    if not database_unavailable(exc):
        return None
    try:
        missing = missing_database()  # a SQLite file in a folder that does not exist says so
    except RuntimeError:
        missing = None
    if missing and "folder" in missing:
        return missing
    return f"cannot {'reach' if '://' in where else 'open'} the database {where}: {first}"


STATISTICS_SECONDS = 86_400.0  # how often the worker refreshes SQLite's planner statistics
_statistics_at: dict[
    str, float
] = {}  # per database URL: when this process last ran ANALYZE (time.monotonic())


def refresh_statistics(*, now: float | None = None) -> bool:
    """SQLite's planner statistics (``ANALYZE``), at most once a ``STATISTICS_SECONDS`` per process: without
    them SQLite cannot tell which index narrows a list page (a page filtered by processor then sorts all of
    that processor's rows). PostgreSQL's autovacuum keeps its own. True when it ran."""
    if db.engine.dialect.name != "sqlite":
        return False
    now = time.monotonic() if now is None else now
    key = str(db.engine.url)
    last = _statistics_at.get(key)
    if last is not None and now - last < STATISTICS_SECONDS:
        return False
    immediate()
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    _statistics_at[key] = now
    return True
