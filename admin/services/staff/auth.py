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

Unknown address, wrong password and disabled account all get the same message. Every
sign-in, failed sign-in and sign-out writes an audit entry in the same transaction as the
counters; a failed one names the attempted email and the address, never the password.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from admin.dbutil import immediate
from admin.extensions import db
from admin.limiter import network_of
from admin.models import User
from admin.services.core import audit, ratelimit
from admin.services.staff.users import find_user
from admin.timeutil import utcnow

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


def authenticate(email: str, password: str, client_addr: str | None) -> SignIn:
    """Check credentials under the throttles; records failures, clears on success, audits both. Commits."""
    cfg = current_app.config
    max_failures, lockout, ip_max = (int(cfg["LOGIN_MAX_FAILURES"]), int(cfg["LOGIN_LOCKOUT_SECONDS"]),
                                     int(cfg["LOGIN_IP_MAX_FAILURES"]))
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
        user.last_login_at = now
        audit.record("user.sign_in", object_type="user", object_id=str(user.id), parameters={"address": addr},
                     actor=user.email, user_id=user.id, commit=False)
        db.session.commit()
        return SignIn(user=user)

    wait = max(ratelimit.hit(account_key, limit=max_failures, window=lockout, block=lockout, now=now),
               ratelimit.hit(ip_key, limit=ip_max, window=lockout, block=lockout, now=now))
    _audit_failure(email_norm, addr, "wrong email or password" + ("; address now blocked" if wait else ""))
    db.session.commit()
    if wait:
        return SignIn(error=locked_message(wait), locked_seconds=wait)
    return SignIn(error=BAD_CREDENTIALS)


def _audit_failure(email: str, addr: str, message: str) -> None:
    shown = "".join(c if c.isprintable() else "?" for c in email[:255])  # as typed, minus control characters
    audit.record("user.sign_in_failed", object_type="user", parameters={"email": shown, "address": addr},
                 ok=False, message=message, actor="anonymous", commit=False)


def sign_out(user: User, client_addr: str | None) -> None:
    """End every session of ``user`` (a saved copy of the cookie stops working too). Commits."""
    user.end_sessions()
    audit.record("user.sign_out", object_type="user", object_id=str(user.id),
                 parameters={"address": client_addr or "unknown"}, actor=user.email, user_id=user.id, commit=False)
    db.session.commit()
