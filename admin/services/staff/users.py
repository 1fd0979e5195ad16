"""Staff accounts: one set of rules for the CLI (``user ...``) and the users page (``/settings/users``).
Every change writes an audit entry in the same transaction.

Rules: an email is an address, at most 255 characters, one account each; a password 10 to 1,024
characters; an admin cannot demote or deactivate themselves, and the last active admin stays one (someone
must be able to manage accounts). A temporary password (an account added on the page, a reset by an
admin) works for ``TEMP_PASSWORD_HOURS`` and only to choose a new one. Deactivating an account, a new
password and revoking end its sessions.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from admin.dbutil import immediate
from admin.errors import ServiceError
from admin.extensions import db
from admin.models import ROLES, StaffSession, User
from admin.services.core import audit
from admin.services.staff import sessions
from admin.timeutil import utcnow

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
MAX_EMAIL = 255


def check_new_user(email: str, role: str = "viewer") -> str:
    """The normalised email of an account that could be created, or a ServiceError saying why not
    (asked before a password is, so nobody types one twice for an address that is refused)."""
    email = (email or "").strip().lower()
    if "@" not in email or len(email) > MAX_EMAIL or not email.isprintable():
        raise ServiceError(
            f"email: enter an address such as name@example.org (at most {MAX_EMAIL} characters)",
            field="email",
        )
    if role not in ROLES:
        raise ServiceError(f"role: choose one of {', '.join(ROLES)}", field="role")
    if find_user(email):
        raise ServiceError(f"email: {email} already has an account", field="email")
    return email


def create_user(email: str, password: str, role: str = "viewer", *, temporary: bool = False) -> User:
    """A new account. ``temporary``: the password is one to change at first sign-in, within
    ``TEMP_PASSWORD_HOURS``."""
    immediate()  # SQLite: take the write lock before reading, so a busy worker makes us wait, not fail
    email = check_new_user(email, role)
    _check_password(password)
    user = User(email=email, role=role)
    user.set_password(password)
    if temporary:
        _make_temporary(user)
    db.session.add(user)
    db.session.flush()
    audit.about_user(
        "user.create",
        user,
        "temporary password: to be changed at first sign-in" if temporary else None,
        {"role": role},
    )
    db.session.commit()
    return user


def invite_user(email: str, role: str = "viewer") -> tuple[User, str]:
    """An account with a generated temporary password (the users page shows it once). Same rules as
    ``create_user``; returns the account and the password."""
    password = temporary_password()
    return create_user(email, password, role, temporary=True), password


def temporary_password() -> str:
    """Four groups of four letters and digits: about 80 bits, easy to read out or type."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _make_temporary(user: User) -> None:
    user.must_change_password = True
    user.password_expires_at = utcnow() + timedelta(
        hours=float(current_app.config.get("TEMP_PASSWORD_HOURS") or 72)
    )


def reset_password(user: User) -> str:
    """An admin gives ``user`` a temporary password (returned, shown once): every session ends, and the
    next sign-in must choose a new password. Two-factor sign-in stays as it is. Commits."""
    immediate()
    password = temporary_password()
    user.set_password(password)
    _make_temporary(user)
    user.end_sessions()
    ended = sessions.end_all(user, "password")
    audit.about_user("user.reset_password", user, f"temporary password set; {ended} session(s) ended")
    db.session.commit()
    return password


def change_own_password(user: User, current: str, new: str, keep_session: int | None) -> User:
    """The signed-in user chooses a new password (a temporary one must be replaced this way). Other
    sessions end; ``keep_session`` (this browser's) goes on, re-signed by the caller. Commits."""
    immediate()
    if not user.check_password(current or ""):
        raise ServiceError("current password: that is not your current password", field="current")
    _check_password(new)
    if new == current:
        raise ServiceError("new password: choose one different from the current password", field="password")
    user.set_password(new)
    was_temporary = user.must_change_password
    user.must_change_password = False
    user.password_expires_at = None
    user.end_sessions()
    ended = sessions.end_all(user, "password", keep=keep_session)
    audit.about_user(
        "user.change_password",
        user,
        ("temporary password replaced" if was_temporary else "password changed")
        + f"; {ended} other session(s) ended",
    )
    db.session.commit()
    return user


def _active_admins() -> int:
    return (
        db.session.scalar(
            select(func.count()).select_from(User).where(User.role == "admin", User.active.is_(True))
        )
        or 0
    )


def _acting_user_id() -> int | None:
    return audit.current_actor()[0]


def change_role(user: User, role: str) -> User:
    """Give ``user`` another role. Commits."""
    immediate()
    if role not in ROLES:
        raise ServiceError(f"role: choose one of {', '.join(ROLES)}", field="role")
    old = user.role
    if role == old:
        raise ServiceError(f"role: {user.email} is already {role}", field="role")
    if old == "admin":
        if user.id == _acting_user_id():
            raise ServiceError(
                "role: you cannot take the admin role from yourself; ask another admin", field="role"
            )
        if user.active and _active_admins() <= 1:
            raise ServiceError(
                f"role: {user.email} is the only active admin; make someone else admin first", field="role"
            )
    user.role = role
    audit.about_user("user.role", user, f"role {old} -> {role}", {"from": old, "to": role})
    db.session.commit()
    return user


def deactivate(user: User) -> User:
    """``user`` can no longer sign in; every session ends. The account and its history stay. Commits."""
    immediate()
    if not user.active:
        raise ServiceError(f"{user.email} is already deactivated")
    if user.id == _acting_user_id():
        raise ServiceError("you cannot deactivate your own account; ask another admin")
    if user.role == "admin" and _active_admins() <= 1:
        raise ServiceError(f"{user.email} is the only active admin; make someone else admin first")
    user.active = False
    user.end_sessions()
    ended = sessions.end_all(user, "deactivated")
    audit.about_user("user.deactivate", user, f"deactivated; {ended} session(s) ended")
    db.session.commit()
    return user


def activate(user: User) -> User:
    """A deactivated account may sign in again (with its password as it was). Commits."""
    immediate()
    if user.active:
        raise ServiceError(f"{user.email} is already active")
    user.active = True
    audit.about_user("user.activate", user)
    db.session.commit()
    return user


def revoke_session(user: User, session_id: int) -> None:
    """End one of ``user``'s sessions (that browser must sign in again). Commits."""
    immediate()
    row = db.session.get(StaffSession, session_id)
    if row is None or row.user_id != user.id:
        raise ServiceError(f"{user.email} has no session {session_id}")
    if not sessions.end(row, "revoked"):
        raise ServiceError("that session has already ended")
    audit.about_user(
        "user.revoke_session", user, "one session ended", {"session": session_id, "address": row.address}
    )
    db.session.commit()


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.email)))


def get_user_by_id(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def set_password(user: User, password: str) -> User:
    """A new password; every session signed in with the old one ends."""
    immediate()
    _check_password(password)
    user.set_password(password)
    user.must_change_password = False
    user.password_expires_at = None
    user.end_sessions()
    sessions.end_all(user, "password")
    audit.about_user("user.set_password", user, "password changed; all sessions ended")
    db.session.commit()
    return user


def revoke_sessions(user: User) -> User:
    """End every session of ``user`` now (a lost laptop, a leaked cookie)."""
    immediate()
    user.end_sessions()
    sessions.end_all(user, "revoked_all")
    audit.about_user("user.revoke_sessions", user, "all sessions ended")
    db.session.commit()
    return user


def _check_password(password: str | None) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise ServiceError(f"password: use at least {MIN_PASSWORD} characters", field="password")
    if len(password or "") > MAX_PASSWORD:
        raise ServiceError(f"password: use at most {MAX_PASSWORD} characters", field="password")


def find_user(email: str) -> User | None:
    email = (email or "").strip().lower()
    if not email or len(email) > MAX_EMAIL or not email.isprintable():
        return None  # no account can have it (and PostgreSQL refuses NUL characters outright)
    return db.session.scalar(select(User).where(func.lower(User.email) == email))


def get_user(email: str) -> User:
    user = find_user(email)
    if user is None:
        raise ServiceError(f"no staff account with email {(email or '').strip()[:255]!r}", field="email")
    return user
