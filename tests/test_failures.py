"""Which database errors mean "unavailable" (503, retry, hand work back) and which are a bug (500, logged)."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from conftest import PG_URL
from sqlalchemy.exc import DBAPIError

from admin.failures import database_unavailable


def wrapped(call, driver_error: type[Exception]) -> DBAPIError:
    """The driver's own error from ``call``, wrapped as SQLAlchemy wraps it."""
    try:
        call()
    except driver_error as orig:
        return DBAPIError.instance("SELECT 1", {}, orig, driver_error)
    raise AssertionError("no error")


def test_sqlite_busy_is_unavailable_and_a_wrong_statement_is_not(tmp_path):
    path = tmp_path / "x.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    busy = wrapped(lambda: other.execute("BEGIN IMMEDIATE"), sqlite3.Error)
    wrong = wrapped(lambda: other.execute("SELECT * FROM no_such_table"), sqlite3.Error)
    assert type(busy).__name__ == type(wrong).__name__ == "OperationalError"
    assert database_unavailable(busy) and not database_unavailable(wrong)


def test_postgresql_refused_connection_is_unavailable_and_a_wrong_statement_is_not():
    refused = wrapped(
        lambda: psycopg.connect("postgresql://postgres@127.0.0.1:9/test", connect_timeout=2), psycopg.Error
    )
    assert database_unavailable(refused)
    try:
        conn = psycopg.connect(PG_URL, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    with conn:
        wrong = wrapped(lambda: conn.execute("SELECT * FROM no_such_table"), psycopg.Error)
    assert not database_unavailable(wrong)
