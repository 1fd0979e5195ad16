"""A pooled PostgreSQL connection that died while idle is replaced before use; one used moments ago is not
pinged (a ping was a round trip per transaction), and if it died its failure is a disconnect after which the
pool's other connections are replaced too."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from admin import extensions
from admin.extensions import db
from admin.failures import database_unavailable

pytestmark = pytest.mark.postgres_only


def _kill_pooled_connection() -> int:
    """End the server side of the pool's one idle connection, as a database restart would."""
    pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    db.session.commit()  # the connection goes back to the pool
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    return pid


def test_a_connection_that_died_while_idle_is_replaced_before_use(app, monkeypatch):
    monkeypatch.setattr(extensions, "PING_IDLE_SECONDS", 0.0)  # every pooled connection counts as idle
    old = _kill_pooled_connection()
    assert db.session.execute(text("SELECT pg_backend_pid()")).scalar_one() != old
    db.session.commit()


def test_a_connection_used_moments_ago_is_not_pinged(app, monkeypatch):
    monkeypatch.setattr(extensions, "PING_IDLE_SECONDS", 3600.0)
    _kill_pooled_connection()
    with pytest.raises(DBAPIError) as failed:  # not pinged: its first statement finds it dead
        db.session.execute(text("SELECT 1"))
    assert database_unavailable(failed.value)
    db.session.rollback()
    assert db.session.execute(text("SELECT 1")).scalar_one() == 1  # then a fresh connection
    db.session.commit()
