"""Signed-in browsers, one ``staff_session`` row each.

Signing in (``start``) makes a row and gives the browser a random key (kept in its Flask session next to
Flask-Login's user id; only the key's hash is stored). Every request's user loader (``load_user``) checks
both the user's session token (changed when a password changes or all sessions are revoked) and that row:
ended (signed out, revoked from the users page, the account deactivated) or idle for longer than
``SESSION_IDLE_MINUTES``, and the request is signed out. A row's ``last_seen_at`` is written at most once a
minute (``TOUCH_SECONDS``), in its own short transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, g
from sqlalchemy import select, update

from admin.dbutil import parse_id, rowcount
from admin.extensions import db
from admin.models import StaffSession, User
from admin.timeutil import utcnow

SESSION_KEY = "staff_sid"  # the Flask session's entry holding this browser's key
TOUCH_SECONDS = 60
KEEP = timedelta(days=30)  # the worker deletes rows that ended (or made no request) this long ago
ENDED_REASONS = {
    "sign_out": "signed out",
    "revoked": "revoked by an admin",
    "revoked_all": "all sessions revoked",
    "idle": "idle too long",
    "password": "password changed",
    "deactivated": "account deactivated",
}


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def idle_limit() -> timedelta | None:
    minutes = float(current_app.config.get("SESSION_IDLE_MINUTES") or 0)
    return timedelta(minutes=minutes) if minutes > 0 else None


def start(user: User, address: str | None, user_agent: str | None) -> str:
    """A new session row for ``user`` (in the caller's transaction); returns the key for the browser."""
    key = secrets.token_urlsafe(32)
    now = utcnow()
    agent = "".join(c for c in (user_agent or "") if c.isprintable())[:255] or None
    db.session.add(
        StaffSession(
            user_id=user.id,
            key_hash=_hash(key),
            created_at=now,
            last_seen_at=now,
            address=(address or "unknown")[:64],
            user_agent=agent,
        )
    )
    return key


def current_id() -> int | None:
    """The id of the request's own session row (once the user is loaded), else None."""
    return g.get("paydesk_session_id")


def load_user(user_id: str | None, key: str | None) -> User | None:
    """Flask-Login's user loader: ``<id>.<session token>`` plus this browser's session key, or None."""
    uid, _, token = (user_id or "").partition(".")
    pk = parse_id(uid)
    if pk is None or not token or not key:
        return None
    found = db.session.execute(  # one round trip for both
        select(User, StaffSession)
        .join(StaffSession, StaffSession.user_id == User.id)
        .where(User.id == pk, StaffSession.key_hash == _hash(key))
    ).first()
    if found is None:
        return None
    user, row = found
    if not hmac.compare_digest(user.session_token or "", token) or row.ended_at is not None:
        return None
    now = utcnow()
    limit = idle_limit()
    if limit is not None and row.last_seen_at + limit <= now:
        _end_idle(row, user, now, limit)
        g.paydesk_session_idle = True
        return None
    if (now - row.last_seen_at).total_seconds() >= TOUCH_SECONDS:
        with db.engine.execution_options(sqlite_immediate=True).begin() as conn:
            conn.execute(update(StaffSession).where(StaffSession.id == row.id).values(last_seen_at=now))
    g.paydesk_session_id = row.id
    return user


def _end_idle(row: StaffSession, user: User, now: datetime, limit: timedelta) -> None:
    """Mark an idle session ended and say so in the audit log (its own transaction: nothing else is pending
    while the user loads)."""
    from admin.dbutil import immediate
    from admin.services.core import audit

    row_id, user_id = row.id, user.id
    minutes = int(limit.total_seconds() // 60)
    immediate()
    done = rowcount(
        db.session.execute(
            update(StaffSession)
            .where(StaffSession.id == row_id, StaffSession.ended_at.is_(None))
            .values(ended_at=now, ended_reason="idle")
        )
    )
    if done:
        audit.about_user(
            "user.session_idle",
            user,
            f"signed out after {minutes} minutes without a request",
            {"session": row_id},
            actor="system",
            user_id=user_id,
        )
    db.session.commit()


def end(row: StaffSession, reason: str) -> bool:
    """End one session (in the caller's transaction). False when it had already ended."""
    if row.ended_at is not None:
        return False
    row.ended_at = utcnow()
    row.ended_reason = reason
    return True


def end_all(user: User, reason: str, keep: int | None = None) -> int:
    """End every open session of ``user`` but ``keep`` (in the caller's transaction); how many ended."""
    q = update(StaffSession).where(StaffSession.user_id == user.id, StaffSession.ended_at.is_(None))
    if keep is not None:
        q = q.where(StaffSession.id != keep)
    return rowcount(db.session.execute(q.values(ended_at=utcnow(), ended_reason=reason))) or 0


@dataclass
class SessionView:
    id: int
    created_at: datetime
    last_seen_at: datetime
    address: str | None
    browser: str
    current: bool


def open_sessions(user: User) -> list[SessionView]:
    """The user's sessions that still work (not ended, not idle past the limit), newest first."""
    q = select(StaffSession).where(StaffSession.user_id == user.id, StaffSession.ended_at.is_(None))
    limit = idle_limit()
    if limit is not None:
        q = q.where(StaffSession.last_seen_at > utcnow() - limit)
    mine = current_id()
    return [
        SessionView(r.id, r.created_at, r.last_seen_at, r.address, browser_name(r.user_agent), r.id == mine)
        for r in db.session.scalars(q.order_by(StaffSession.last_seen_at.desc(), StaffSession.id.desc()))
    ]


def open_counts() -> dict[int, int]:
    """Open sessions per user id (for the users list)."""
    from sqlalchemy import func

    q = select(StaffSession.user_id, func.count()).where(StaffSession.ended_at.is_(None))
    limit = idle_limit()
    if limit is not None:
        q = q.where(StaffSession.last_seen_at > utcnow() - limit)
    return dict(db.session.execute(q.group_by(StaffSession.user_id)).all())


def browser_name(agent: str | None) -> str:
    """A short name for a User-Agent ("Firefox on Linux"), enough to tell one's own devices apart."""
    text = agent or ""
    if not text:
        return "unknown browser"
    browser = next(
        (
            name
            for token, name in (
                ("Edg/", "Edge"),
                ("OPR/", "Opera"),
                ("Firefox/", "Firefox"),
                ("Chrome/", "Chrome"),
                ("Chromium/", "Chromium"),
                ("Safari/", "Safari"),
                ("curl/", "curl"),
            )
            if token in text
        ),
        None,
    )
    system = next(
        (
            name
            for token, name in (
                ("Android", "Android"),
                ("iPhone", "iPhone"),
                ("iPad", "iPad"),
                ("Windows", "Windows"),
                ("Mac OS X", "macOS"),
                ("Linux", "Linux"),
            )
            if token in text
        ),
        None,
    )
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or text[:60]


def prune(older_than: timedelta) -> int:
    """Delete session rows that ended (or went idle) more than ``older_than`` ago. Commits."""
    from sqlalchemy import delete, or_

    cutoff = utcnow() - older_than
    gone = rowcount(
        db.session.execute(
            delete(StaffSession).where(
                or_(StaffSession.ended_at < cutoff, StaffSession.last_seen_at < cutoff)
            )
        )
    )
    db.session.commit()
    return gone or 0
