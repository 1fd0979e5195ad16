"""Staff sign-in with throttling, sign-out, and the audit entries for both.

One mechanism, the ``rate_limit`` table (``admin.services.core.ratelimit``), with two counters for
each failed attempt, both keyed by the client (proxy-corrected, see ``PAYDESK_TRUSTED_PROXIES``;
an IPv4 address, or an IPv6 address's /64, ``limiter.network_of``: one home or server has a whole
/64 and must not get a fresh budget per address). "Address" below means that.

- per account at an address (``login-account:<email>|<address>``): ``LOGIN_MAX_FAILURES``
  failures in ``LOGIN_LOCKOUT_SECONDS`` block that account *from that address* for as long.
  Addresses with no account are counted the same way, so a block does not tell anyone which
  accounts exist.
- per address (``login-ip:<address>``): ``LOGIN_IP_MAX_FAILURES`` failures, whatever the
  accounts, block that address for ``LOGIN_LOCKOUT_SECONDS``.

Only the failing address is ever blocked: the owner of an account under attack signs in
from their own address as usual. While a block lasts even the right password is refused
from there (otherwise the block would be an oracle). A successful sign-in clears its own
account-and-address counter, not the address's (one valid account must not reset the brake
on guessing the others).

An account with two-factor sign-in on (``admin.services.staff.totp``) is not signed in by its password:
``authenticate`` answers ``needs_code`` and ``second_factor`` finishes the sign-in with a code from the
app or a recovery code. Wrong codes are counted per account, from any address (whoever types them
already has the password): ``LOGIN_CODE_MAX_FAILURES`` in ``LOGIN_LOCKOUT_SECONDS`` block the code step
for as long. A signed-in browser gets a ``staff_session`` row (``admin.services.staff.sessions``).

Unknown address, wrong password and disabled account all get the same message. Every
sign-in, failed sign-in and sign-out writes an audit entry in the same transaction as the
counters; a failed one names the attempted email and the address, never the password.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from admin.dbutil import immediate
from admin.extensions import db
from admin.limiter import network_of
from admin.models import User
from admin.services.core import audit, ratelimit
from admin.services.staff import sessions, totp
from admin.services.staff.users import find_user
from admin.timeutil import utcnow

BAD_CREDENTIALS = "That email and password do not match an account."
EXPIRED_TEMPORARY = "That temporary password has expired. Ask an admin for a new one."
BAD_CODE = "That code is not right. Enter the 6-digit code your app shows now, or one of your recovery codes."
CODE_STEP_OVER = "The sign-in took too long or was interrupted. Sign in again."
_DUMMY_HASH: str | None = None


@dataclass
class SignIn:
    user: User | None = None
    error: str | None = None
    locked_seconds: int = 0
    needs_code: bool = False  # the password was right; a second factor comes next
    session_key: str | None = None  # for the browser, once signed in
    start_over: bool = False  # the code step cannot go on: back to the password

    @property
    def ok(self) -> bool:
        return self.user is not None and not self.needs_code


def locked_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed attempts. Try again in {minutes} {unit}."


def _equalise_timing(password: str) -> None:
    """Spend as long as a real password check when there is no account to check against."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = generate_password_hash("paydesk-timing-equaliser")
    check_password_hash(_DUMMY_HASH, password)


def throttle_keys(email: str, client_addr: str | None) -> tuple[str, str]:
    """(per-address key, per-account-at-address key) for a sign-in attempt: by :func:`network_of` the address."""
    net = network_of(client_addr)
    return ratelimit.safe_key("login-ip", net), ratelimit.safe_key("login-account", email, net)


def authenticate(email: str, password: str, client_addr: str | None, user_agent: str | None = None) -> SignIn:
    """Check credentials under the throttles; records failures, clears on success, audits both. Commits.
    A right password of an account with two-factor sign-in gives ``needs_code`` (nobody is signed in yet)."""
    cfg = current_app.config
    max_failures, lockout, ip_max = (
        int(cfg["LOGIN_MAX_FAILURES"]),
        int(cfg["LOGIN_LOCKOUT_SECONDS"]),
        int(cfg["LOGIN_IP_MAX_FAILURES"]),
    )
    now = utcnow()
    addr = client_addr or "unknown"
    email_norm = (email or "").strip().lower()
    ip_key, account_key = throttle_keys(email_norm, addr)
    immediate()  # every path below writes: on SQLite, wait for the worker's write lock instead of failing

    wait = max(ratelimit.blocked_for(ip_key, now), ratelimit.blocked_for(account_key, now))
    if wait:
        _audit_failure(email_norm, addr, "refused: this address is blocked after too many failed attempts")
        db.session.commit()
        return SignIn(error=locked_message(wait), locked_seconds=wait)

    user = find_user(email_norm)
    if user is None:
        _equalise_timing(password)
    elif user.check_password(password) and user.active:
        ratelimit.reset(account_key)
        if user.password_expires_at is not None and user.password_expires_at <= now:
            _audit_failure(email_norm, addr, "temporary password expired")
            db.session.commit()
            return SignIn(error=EXPIRED_TEMPORARY)
        if user.two_factor:
            db.session.commit()
            return SignIn(user=user, needs_code=True)
        return _signed_in(user, addr, user_agent, {"address": addr})

    wait = max(
        ratelimit.hit(account_key, limit=max_failures, window=lockout, block=lockout, now=now),
        ratelimit.hit(ip_key, limit=ip_max, window=lockout, block=lockout, now=now),
    )
    _audit_failure(email_norm, addr, "wrong email or password" + ("; address now blocked" if wait else ""))
    db.session.commit()
    if wait:
        return SignIn(error=locked_message(wait), locked_seconds=wait)
    return SignIn(error=BAD_CREDENTIALS)


def _signed_in(
    user: User, addr: str, user_agent: str | None, parameters: dict, message: str | None = None
) -> SignIn:
    user.last_login_at = utcnow()
    key = sessions.start(user, addr, user_agent)
    audit.about_user(
        "user.sign_in", user, message, parameters, email=False, actor=user.email, user_id=user.id
    )
    db.session.commit()
    return SignIn(user=user, session_key=key)


def second_factor(
    user_id: int,
    session_token: str,
    started: float,
    code: str,
    client_addr: str | None,
    user_agent: str | None = None,
) -> SignIn:
    """Finish a sign-in whose password step (``started``, a Unix time) was right, with an app code or a
    recovery code. ``session_token`` is the account's at the password step: a password changed or sessions
    revoked since then start over. Commits."""
    cfg = current_app.config
    addr = client_addr or "unknown"
    immediate()
    user = db.session.get(User, user_id)
    too_late = (
        not isinstance(started, int | float) or started + float(cfg["SECOND_FACTOR_SECONDS"]) < time.time()
    )
    if (
        user is None
        or not user.active
        or not user.two_factor
        or user.session_token != session_token
        or too_late
    ):
        db.session.commit()
        return SignIn(error=CODE_STEP_OVER, start_over=True)
    key = ratelimit.safe_key("login-code", str(user.id))
    now = utcnow()
    wait = ratelimit.blocked_for(key, now)
    if wait:
        _audit_code_failure(user, addr, "refused: too many wrong codes for this account")
        db.session.commit()
        return SignIn(error=locked_message(wait), locked_seconds=wait)
    how = totp.verify(user, code)
    if how:
        ratelimit.reset(key)
        message = None
        if how == "recovery code":
            message = f"signed in with a recovery code; {totp.remaining_codes(user)} left"
        return _signed_in(user, addr, user_agent, {"address": addr, "second_factor": how}, message)
    wait = ratelimit.hit(
        key,
        limit=int(cfg["LOGIN_CODE_MAX_FAILURES"]),
        window=int(cfg["LOGIN_LOCKOUT_SECONDS"]),
        block=int(cfg["LOGIN_LOCKOUT_SECONDS"]),
        now=now,
    )
    _audit_code_failure(user, addr, "wrong two-factor code" + ("; code step now blocked" if wait else ""))
    db.session.commit()
    if wait:
        return SignIn(error=locked_message(wait), locked_seconds=wait)
    return SignIn(error=BAD_CODE)


def _audit_code_failure(user: User, addr: str, message: str) -> None:
    audit.about_user(
        "user.sign_in_failed",
        user,
        message,
        {"address": addr, "step": "two-factor code"},
        ok=False,
        actor="anonymous",
    )


def _audit_failure(email: str, addr: str, message: str) -> None:
    shown = "".join(c if c.isprintable() else "?" for c in email[:255])  # as typed, minus control characters
    audit.record(
        "user.sign_in_failed",
        object_type="user",
        parameters={"email": shown, "address": addr},
        ok=False,
        message=message,
        actor="anonymous",
        commit=False,
    )


def sign_out(user: User, client_addr: str | None, session_id: int | None = None) -> None:
    """End this browser's session (a saved copy of its cookie stops working too); the user's other
    browsers stay signed in. Without a session row, every session of ``user`` ends. Commits."""
    from admin.models import StaffSession

    immediate()
    row = db.session.get(StaffSession, session_id) if session_id is not None else None
    if row is not None and row.user_id == user.id:
        sessions.end(row, "sign_out")
    else:
        user.end_sessions()
        sessions.end_all(user, "sign_out")
    audit.about_user(
        "user.sign_out",
        user,
        parameters={"address": client_addr or "unknown"},
        email=False,
        actor=user.email,
        user_id=user.id,
    )
    db.session.commit()
