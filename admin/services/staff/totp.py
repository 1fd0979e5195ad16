"""Two-factor sign-in: TOTP codes (RFC 6238: 6 digits every 30 seconds, as every authenticator app reads
them) and one-time recovery codes.

Optional per user; ``REQUIRE_2FA_FOR_ADMINS`` makes it a must for admins (``required``). Enrolment is two
steps: ``begin`` stores a new secret (encrypted, like Stripe keys) that is not yet in force, the user scans
its QR code (``qr_svg``, drawn here as SVG, no network) and ``confirm``s with a code from the app, which
turns it on and gives the recovery codes: shown once, stored as SHA-256 hashes, each good once. A code
is accepted for the time step before, at and after now (clocks drift) and never twice (``totp_last_step``).
Every change writes an audit entry in its transaction; nothing here ever records a secret or a code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import pyotp
from flask import current_app
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from admin import crypto
from admin.dbutil import immediate, rowcount
from admin.errors import ServiceError
from admin.extensions import db
from admin.models import RecoveryCode, User
from admin.services.core import audit
from admin.services.staff import sessions
from admin.timeutil import utcnow

RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
STEP = 30


def required(user: User) -> bool:
    """True when this user must have two-factor sign-in (an admin, with REQUIRE_2FA_FOR_ADMINS on)."""
    return bool(current_app.config.get("REQUIRE_2FA_FOR_ADMINS")) and user.role == "admin"


def _issuer() -> str:
    return str(current_app.config.get("SITE_NAME") or "paydesk")


def _secret(user: User) -> str | None:
    return crypto.decrypt(user.totp_secret) if user.totp_secret else None


def begin(user: User) -> str:
    """Start enrolment: a new secret, not in force until ``confirm``. Commits; returns the secret."""
    immediate()
    if user.two_factor:
        raise ServiceError("two-factor sign-in is already on for this account; turn it off first")
    secret = pyotp.random_base32()
    user.totp_secret = crypto.encrypt(secret)
    user.totp_last_step = None
    audit.about_user("user.2fa_begin", user, "two-factor enrolment started")
    db.session.commit()
    return secret


def pending_secret(user: User) -> str | None:
    """The secret of an enrolment begun and not yet confirmed, else None."""
    return None if user.two_factor else _secret(user)


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=_issuer())


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as inline SVG markup (dark on white, whatever the page's colours), labelled."""
    import segno

    svg = segno.make(uri, error="m").svg_inline(
        scale=5, border=4, dark="#000", light="#fff", svgclass="qr-code", lineclass=None, omitsize=False
    )
    return svg.replace("<svg ", '<svg role="img" aria-label="QR code to scan with an authenticator app" ', 1)


def grouped(secret: str) -> str:
    """The secret in groups of four, as people type it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _digits(code: str | None) -> str:
    return "".join(ch for ch in (code or "") if not ch.isspace())


def _matching_step(secret: str, code: str, after: int | None, now: float | None = None) -> int | None:
    code = _digits(code)
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP)
    for step in (current - 1, current, current + 1):
        if (after is None or step > after) and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def check_code(user: User, code: str | None) -> bool:
    """True for a right app code not used before (it is then used up: the caller commits). Used up by one
    conditional UPDATE (``totp_last_step < step``): of two requests posting the same code at once, the second
    waits for the first's row lock and then finds the step taken, so one code gives one sign-in."""
    secret = _secret(user)
    if not secret or not user.two_factor:
        return False
    step = _matching_step(secret, code or "", user.totp_last_step)
    if step is None:
        return False
    taken = rowcount(
        db.session.execute(
            update(User)
            .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        )
    )
    if taken != 1:
        return False
    set_committed_value(user, "totp_last_step", step)
    return True


def _normal_recovery(code: str | None) -> str:
    return "".join(ch for ch in (code or "").lower() if ch.isalnum())


def _hash(code: str) -> str:
    return hashlib.sha256(_normal_recovery(code).encode()).hexdigest()


def use_recovery_code(user: User, code: str | None) -> bool:
    """True for an unused recovery code of ``user``, which is then used up (the caller commits)."""
    text = _normal_recovery(code)
    if len(text) != 10 or not text.isascii():
        return False
    row = db.session.scalar(
        select(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _hash(text),
            RecoveryCode.used_at.is_(None),
        )
        .with_for_update()
    )
    if row is None:
        return False
    row.used_at = utcnow()
    db.session.flush()
    return True


def verify(user: User, code: str | None) -> str | None:
    """How ``code`` proves the second factor ("authenticator app", "recovery code"), or None."""
    if check_code(user, code):
        return "authenticator app"
    if use_recovery_code(user, code):
        return "recovery code"
    return None


def remaining_codes(user: User) -> int:
    return (
        db.session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def _new_recovery_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.session.add(RecoveryCode(user_id=user.id, code_hash=_hash(raw)))
    return codes


def confirm(user: User, code: str | None) -> list[str]:
    """Turn two-factor sign-in on with a code from the app; returns the recovery codes (shown once). The user's
    other sessions (signed in with the password alone) end; this browser's goes on. Commits."""
    immediate()
    secret = pending_secret(user)
    if secret is None:
        raise ServiceError("start the set-up again: there is no enrolment waiting for a code", field="code")
    step = _matching_step(secret, code or "", None)
    if step is None:
        raise ServiceError(
            "that code is not the one the app shows now; check the app and the device's clock", field="code"
        )
    user.totp_enabled_at = utcnow()
    user.totp_last_step = step
    codes = _new_recovery_codes(user)
    ended = sessions.end_all(user, "2fa_enabled", keep=sessions.current_id())  # signed in without the code
    audit.about_user(
        "user.2fa_enable",
        user,
        f"two-factor sign-in on; {len(codes)} recovery codes issued; {ended} other session(s) ended",
    )
    db.session.commit()
    return codes


def _proof(user: User, code: str | None) -> None:
    if not check_code(user, code):
        raise ServiceError("enter the code your authenticator app shows now", field="code")


def regenerate_recovery_codes(user: User, code: str | None) -> list[str]:
    """New recovery codes (the old ones stop working), on a current app code. Commits."""
    immediate()
    if not user.two_factor:
        raise ServiceError("two-factor sign-in is off for this account")
    _proof(user, code)
    codes = _new_recovery_codes(user)
    audit.about_user("user.2fa_recovery_codes", user, f"{len(codes)} new recovery codes; the old ones ended")
    db.session.commit()
    return codes


def _clear(user: User) -> None:
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def disable(user: User, code: str | None) -> None:
    """The user turns two-factor sign-in off, on a current app code (refused where it is required). Commits."""
    immediate()
    if not user.two_factor:
        raise ServiceError("two-factor sign-in is already off for this account")
    if required(user):
        raise ServiceError("admins must keep two-factor sign-in on here (PAYDESK_REQUIRE_2FA_FOR_ADMINS)")
    _proof(user, code)
    _clear(user)
    audit.about_user("user.2fa_disable", user, "two-factor sign-in turned off by the user")
    db.session.commit()


def reset(user: User) -> User:
    """An admin (or the CLI) takes two-factor sign-in off an account whose owner lost the device: they sign
    in with the password alone and set it up again (at once, where it is required). The account's sessions
    end. Commits."""
    immediate()
    was_on = user.two_factor
    _clear(user)
    # Whoever holds the lost device may be signed in: the user's sessions end (an admin resetting their own
    # keeps this browser's).
    ended = sessions.end_all(user, "2fa_reset", keep=sessions.current_id())
    audit.about_user(
        "user.2fa_reset",
        user,
        "two-factor sign-in reset" + ("" if was_on else " (it was off)") + f"; {ended} session(s) ended",
    )
    db.session.commit()
    return user
