"""Staff accounts. Every change writes an audit entry in the same transaction."""

from __future__ import annotations

from sqlalchemy import func, select

from admin.dbutil import immediate
from admin.errors import ServiceError
from admin.extensions import db
from admin.models import ROLES, User
from admin.services.core import audit

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
MAX_EMAIL = 255


def check_new_user(email: str, role: str = "viewer") -> str:
    """The normalised email of an account that could be created, or a ServiceError saying why not
    (asked before a password is, so nobody types one twice for an address that is refused)."""
    email = (email or "").strip().lower()
    if "@" not in email or len(email) > MAX_EMAIL or not email.isprintable():
        raise ServiceError(f"email: enter an address such as name@example.org (at most {MAX_EMAIL} characters)",
                           field="email")
    if role not in ROLES:
        raise ServiceError(f"role: choose one of {', '.join(ROLES)}", field="role")
    if find_user(email):
        raise ServiceError(f"email: {email} already has an account", field="email")
    return email


def create_user(email: str, password: str, role: str = "viewer") -> User:
    immediate()  # SQLite: take the write lock before reading, so a busy worker makes us wait, not fail
    email = check_new_user(email, role)
    _check_password(password)
    user = User(email=email, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    audit.record("user.create", object_type="user", object_id=str(user.id),
                 parameters={"email": email, "role": role}, commit=False)
    db.session.commit()
    return user


def set_password(user: User, password: str) -> User:
    """A new password; every session signed in with the old one ends."""
    immediate()
    _check_password(password)
    user.set_password(password)
    user.end_sessions()
    audit.record("user.set_password", object_type="user", object_id=str(user.id),
                 parameters={"email": user.email}, message="password changed; all sessions ended", commit=False)
    db.session.commit()
    return user


def revoke_sessions(user: User) -> User:
    """End every session of ``user`` now (a lost laptop, a leaked cookie)."""
    immediate()
    user.end_sessions()
    audit.record("user.revoke_sessions", object_type="user", object_id=str(user.id),
                 parameters={"email": user.email}, message="all sessions ended", commit=False)
    db.session.commit()
    return user


def _check_password(password: str | None) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise ServiceError(f"password: use at least {MIN_PASSWORD} characters", field="password")
    if len(password) > MAX_PASSWORD:
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
