"""Flask extensions, created unbound; ``create_app`` binds them."""

import sqlite3
import time
from typing import TYPE_CHECKING, ClassVar

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, Table, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import Pool

# Named constraints, so later migrations (and SQLite batch mode) can find and alter them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    if TYPE_CHECKING:
        # Every model names its table (``__tablename__``), so its ``__table__`` is a Table, not just
        # the FromClause SQLAlchemy declares for any mapped class.
        __table__: ClassVar[Table]


db = SQLAlchemy(model_class=Base)

# The base class of every table. Flask-SQLAlchemy builds ``db.Model`` at run time (a subclass of ``Base``
# with its metaclass and mixins), so a type checker cannot use ``db.Model`` as a base class; it sees
# ``Base``, whose typed ``Mapped`` columns are what it checks. At run time this is ``db.Model`` itself.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_conn, _record):
    """WAL, foreign keys and a busy timeout on every SQLite connection.

    pysqlite's own transaction handling is switched off so that ``_sqlite_begin``
    below decides how each transaction starts.
    """
    if not isinstance(dbapi_conn, sqlite3.Connection):
        return
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn):
    """Writers on SQLite take the write lock up front (``BEGIN IMMEDIATE``).

    A deferred transaction that reads and then writes fails at once with
    SQLITE_BUSY when another process wrote in between; taking the lock first
    makes it wait (busy_timeout) instead. Sessions opt in with the
    ``sqlite_immediate`` execution option (the worker and staff actions do).
    """
    if conn.dialect.name != "sqlite":
        return
    sql = "BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN"
    # On the DBAPI connection itself: SQLAlchemy's statement path (compile cache, events, result) cost more
    # than the BEGIN (~0.5 ms a transaction under the profiler). Its error is wrapped as that path would.
    try:
        conn.connection.driver_connection.execute(sql)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(
            sql, None, exc, sqlite3.Error, hide_parameters=True, dialect=conn.dialect
        ) from exc


# A pooled server connection idle longer than this is pinged before it is handed out (a database restarted or
# a network gone while it sat in the pool: replaced then, not used). One used moments ago is not: pinging it
# was a round trip per transaction; if the server went away in those moments, its first statement fails as a
# disconnect, SQLAlchemy drops every pooled connection, and the worker's retry or the request's 503 follows.
PING_IDLE_SECONDS = 1.0
_IDLE_SINCE = "paydesk.idle_since"  # connection record info: time.monotonic() when it was checked in


@event.listens_for(Pool, "checkin")
def _note_idle(dbapi_conn, record):
    if dbapi_conn is not None:
        record.info[_IDLE_SINCE] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _ping_if_idle(dbapi_conn, record, _proxy):
    """The pool's pre-ping, for server connections idle more than ``PING_IDLE_SECONDS`` (a new connection is
    not pinged, nor is SQLite, which has no server to lose)."""
    if isinstance(dbapi_conn, sqlite3.Connection):
        return
    since = record.info.get(_IDLE_SINCE)
    if since is None or time.monotonic() - since < PING_IDLE_SECONDS:
        return
    autocommit = dbapi_conn.autocommit  # outside a transaction, as SQLAlchemy's own ping
    try:
        dbapi_conn.autocommit = True
        dbapi_conn.execute("SELECT 1")
        dbapi_conn.autocommit = autocommit
    except Exception as exc:  # noqa: BLE001 - any failure: this connection (and those pooled with it) is gone
        raise InvalidatePoolError(f"ping failed: {exc}") from exc
