"""Staff accounts."""

from __future__ import annotations

from sqlalchemy import func, select

from ..dbutil import immediate
from ..extensions import db
from ..models import ROLES, User
from . import ServiceError

MIN_PASSWORD = 10


def create_user(email: str, password: str, role: str = "viewer") -> User:
    email = (email or "").strip().lower()
    immediate()  # SQLite: take the write lock before reading, so a busy worker makes us wait, not fail
    if "@" not in email:
        raise ServiceError("email: enter an address such as name@example.org", field="email")
    if role not in ROLES:
        raise ServiceError(f"role: choose one of {', '.join(ROLES)}", field="role")
    if len(password or "") < MIN_PASSWORD:
        raise ServiceError(f"password: use at least {MIN_PASSWORD} characters", field="password")
    if find_user(email):
        raise ServiceError(f"email: {email} already has an account", field="email")
    user = User(email=email, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def find_user(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == (email or "").strip().lower()))
