"""Session rows: started at sign-in, checked on every request, ended and listed."""

from __future__ import annotations

from datetime import timedelta

from conftest import PASSWORD

from admin.extensions import db
from admin.services.staff import sessions
from admin.services.staff.users import create_user, revoke_sessions
from admin.timeutil import utcnow


def _start(user, agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"):
    key = sessions.start(user, "198.51.100.7", agent)
    db.session.commit()
    return key


def test_a_session_loads_its_user_until_it_ends(app):
    user = create_user("staff@example.org", PASSWORD, "viewer")
    key = _start(user)
    with app.test_request_context():
        assert sessions.load_user(user.get_id(), key) is user
        assert sessions.load_user(user.get_id(), "another key") is None
        assert sessions.load_user(user.get_id(), None) is None
        assert sessions.load_user(f"{user.id}.wrong-token", key) is None
    revoke_sessions(user)
    with app.test_request_context():
        assert sessions.load_user(user.get_id(), key) is None


def test_idle_sessions_are_not_listed_and_do_not_load(app):
    user = create_user("staff@example.org", PASSWORD, "viewer")
    old, fresh = _start(user), _start(user, "Mozilla/5.0 (iPhone) Safari/605")
    rows = sorted(user_rows(user), key=lambda r: r.id)
    rows[0].last_seen_at = utcnow() - timedelta(minutes=31)
    db.session.commit()
    listed = sessions.open_sessions(user)
    assert [s.browser for s in listed] == ["Safari on iPhone"]
    with app.test_request_context():
        assert sessions.load_user(user.get_id(), old) is None
        assert sessions.load_user(user.get_id(), fresh) is user
    app.config["SESSION_IDLE_MINUTES"] = 0  # off
    assert len(sessions.open_sessions(user)) == 1  # the idle one had already ended
    assert sessions.open_counts() == {user.id: 1}


def user_rows(user):
    from sqlalchemy import select

    from admin.models import StaffSession

    return db.session.scalars(select(StaffSession).where(StaffSession.user_id == user.id)).all()


def test_only_the_key_hash_is_stored(app):
    user = create_user("staff@example.org", PASSWORD, "viewer")
    key = _start(user)
    (row,) = user_rows(user)
    assert key not in row.key_hash and len(row.key_hash) == 64


def test_the_worker_forgets_old_rows(app):
    from admin.worker.loop import housekeeping

    user = create_user("staff@example.org", PASSWORD, "viewer")
    _start(user)
    _start(user)
    old, recent = sorted(user_rows(user), key=lambda r: r.id)
    old.ended_at = old.last_seen_at = utcnow() - sessions.KEEP - timedelta(days=1)
    recent.ended_at = utcnow() - timedelta(days=1)
    db.session.commit()
    housekeeping()
    db.session.rollback()
    assert [r.id for r in user_rows(user)] == [recent.id]
