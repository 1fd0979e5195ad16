"""Staff sign-in with throttling.

Two brakes on guessing passwords:

- per account: ``User.failed_logins`` counts wrong passwords; at ``LOGIN_MAX_FAILURES`` the
  account is locked for ``LOGIN_LOCKOUT_SECONDS`` (``User.locked_until``). While locked even
  the right password is refused. Addresses without an account get the same treatment via a
  ``login-email:`` rate-limit row, so a lock-out does not tell anyone which addresses exist.
- per client address: a ``login-ip:<addr>`` rate-limit row; ``LOGIN_IP_MAX_FAILURES``
  failures in ``LOGIN_LOCKOUT_SECONDS`` block that address for as long.

Unknown address, wrong password and disabled account all get the same message. A
successful sign-in clears the account's counters (not the address's: one valid account
must not reset the brake on guessing the others).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from ..dbutil import immediate
from ..extensions import db
from ..models import User
from ..timeutil import utcnow
from . import ratelimit
from .users import find_user

BAD_CREDENTIALS = "That email and password do not match an account."
_DUMMY_HASH: str | None = None


@dataclass
class SignIn:
    user: User | None = None
    error: str | None = None
    locked_seconds: int = 0

    @property
    def ok(self) -> bool:
        return self.user is not None


def locked_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed attempts. Try again in {minutes} {unit}."


def _settings() -> tuple[int, int, int]:
    cfg = current_app.config
    return int(cfg["LOGIN_MAX_FAILURES"]), int(cfg["LOGIN_LOCKOUT_SECONDS"]), int(cfg["LOGIN_IP_MAX_FAILURES"])


def _equalise_timing(password: str) -> None:
    """Spend as long as a real password check when there is no account to check against."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = generate_password_hash("paydesk-timing-equaliser")
    check_password_hash(_DUMMY_HASH, password)


def authenticate(email: str, password: str, client_addr: str | None) -> SignIn:
    """Check credentials under the throttles; records failures, resets on success. Commits."""
    max_failures, lockout, ip_max = _settings()
    immediate()  # every path below writes: on SQLite, wait for the worker's write lock instead of failing
    now = utcnow()
    ip_key = f"login-ip:{client_addr or 'unknown'}"
    email_norm = (email or "").strip().lower()

    wait = ratelimit.blocked_for(ip_key, now)
    if wait:
        return SignIn(error=locked_message(wait), locked_seconds=wait)

    user = find_user(email_norm)
    if user is None:
        email_key = f"login-email:{email_norm}"
        wait = ratelimit.blocked_for(email_key, now)
        if wait:
            return SignIn(error=locked_message(wait), locked_seconds=wait)
        _equalise_timing(password)
        wait = ratelimit.hit(email_key, limit=max_failures, window=lockout, block=lockout, now=now)
        return _fail(ip_key, ip_max, lockout, now, wait)

    if user.locked_until is not None and user.locked_until > now:
        wait = math.ceil((user.locked_until - now).total_seconds())
        return SignIn(error=locked_message(wait), locked_seconds=wait)

    if not user.check_password(password) or not user.active:
        if user.locked_until is not None:  # an expired lock: start counting afresh
            user.locked_until = None
            user.failed_logins = 0
        user.failed_logins = (user.failed_logins or 0) + 1
        wait = 0
        if user.failed_logins >= max_failures:
            user.locked_until = now + timedelta(seconds=lockout)
            wait = lockout
        return _fail(ip_key, ip_max, lockout, now, wait)

    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    db.session.commit()
    return SignIn(user=user)


def _fail(ip_key: str, ip_max: int, lockout: int, now: datetime, account_wait: int) -> SignIn:
    ip_wait = ratelimit.hit(ip_key, limit=ip_max, window=lockout, block=lockout, now=now)
    db.session.commit()
    wait = max(account_wait, ip_wait)
    if wait:
        return SignIn(error=locked_message(wait), locked_seconds=wait)
    return SignIn(error=BAD_CREDENTIALS)
