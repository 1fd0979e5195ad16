"""Two-factor codes: the time window, single use, recovery codes, what is stored."""

from __future__ import annotations

import time

import pyotp
import pytest
from conftest import PASSWORD
from sqlalchemy import select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import RecoveryCode
from admin.services.staff import totp
from admin.services.staff.users import create_user


@pytest.fixture
def user(app):
    return create_user("staff@example.org", PASSWORD, "operator")


def test_enrolment_needs_a_right_code_and_stores_the_secret_encrypted(user):
    secret = totp.begin(user)
    assert secret not in user.totp_secret and not user.two_factor
    with pytest.raises(ServiceError, match="not the one the app shows"):
        totp.confirm(user, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    assert not user.two_factor
    codes = totp.confirm(user, pyotp.TOTP(secret).now())
    assert user.two_factor and len(codes) == totp.RECOVERY_CODES
    with pytest.raises(ServiceError, match="already on"):
        totp.begin(user)


@pytest.mark.parametrize("offset, ok", [(-90, False), (-30, True), (0, True), (30, True), (90, False)])
def test_a_code_is_taken_one_step_either_side(user, offset, ok):
    secret = totp.begin(user)
    totp.confirm(user, pyotp.TOTP(secret).now())
    user.totp_last_step = 0  # as if the last code was used long ago
    _not_at_a_step_boundary()
    assert totp.check_code(user, pyotp.TOTP(secret).at(time.time() + offset)) is ok


def _not_at_a_step_boundary() -> None:
    """A code made now is checked within the same 30-second step."""
    if time.time() % totp.STEP > totp.STEP - 2:
        time.sleep(2.1)


def test_each_code_once_and_never_an_earlier_one(user):
    secret = totp.begin(user)
    _not_at_a_step_boundary()
    totp.confirm(user, pyotp.TOTP(secret).at(time.time() - 30))
    now = pyotp.TOTP(secret).now()
    assert totp.check_code(user, now)
    assert not totp.check_code(user, now)
    assert not totp.check_code(user, pyotp.TOTP(secret).at(time.time() - 30))


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", None])
def test_malformed_codes_are_refused(user, code):
    secret = totp.begin(user)
    totp.confirm(user, pyotp.TOTP(secret).now())
    assert totp.verify(user, code) is None


def test_recovery_codes_are_hashed_and_single_use(user):
    secret = totp.begin(user)
    codes = totp.confirm(user, pyotp.TOTP(secret).now())
    stored = db.session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(stored) == len(codes) and not {c.replace("-", "") for c in codes} & set(stored)
    assert totp.verify(user, f"  {codes[3].upper()} ") == "recovery code"
    assert totp.verify(user, codes[3]) is None
    assert totp.remaining_codes(user) == len(codes) - 1


def test_new_recovery_codes_end_the_old_ones(user):
    secret = totp.begin(user)
    _not_at_a_step_boundary()
    old = totp.confirm(user, pyotp.TOTP(secret).at(time.time() - 30))
    new = totp.regenerate_recovery_codes(user, pyotp.TOTP(secret).now())
    assert totp.verify(user, old[0]) is None and totp.verify(user, new[0]) == "recovery code"


def test_reset_clears_everything(user):
    secret = totp.begin(user)
    codes = totp.confirm(user, pyotp.TOTP(secret).now())
    totp.reset(user)
    assert not user.two_factor and user.totp_secret is None
    assert totp.verify(user, codes[0]) is None and totp.remaining_codes(user) == 0


def test_the_qr_code_is_inline_svg_with_a_label(user):
    secret = totp.begin(user)
    uri = totp.provisioning_uri(user, secret)
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri and "issuer=paydesk" in uri
    svg = totp.qr_svg(uri)
    assert svg.startswith('<svg role="img" aria-label="QR code') and "<path" in svg and "http" not in svg


def test_required_only_for_admins_when_configured(app, user):
    admin = create_user("admin@example.org", PASSWORD, "admin")
    assert not totp.required(admin)
    app.config["REQUIRE_2FA_FOR_ADMINS"] = True
    assert totp.required(admin) and not totp.required(user)


@pytest.mark.postgres_only
def test_one_code_posted_twice_at_once_signs_in_once(app, user, monkeypatch):
    """Two browsers post the same code at the same moment (both read the last used step before either writes
    it): one sign-in, the other told the code is wrong."""
    import threading

    from admin.services.staff import auth

    secret = totp.begin(user)
    _not_at_a_step_boundary()
    totp.confirm(user, pyotp.TOTP(secret).at(time.time() - 30))
    code = pyotp.TOTP(secret).now()
    user_id, token = user.id, user.session_token
    db.session.commit()
    barrier = threading.Barrier(2, timeout=20)
    real = totp._matching_step

    def both_read_first(*args, **kwargs):
        step = real(*args, **kwargs)
        barrier.wait()  # each request has read totp_last_step; now both write
        return step

    monkeypatch.setattr(totp, "_matching_step", both_read_first)
    results, errors = [], []

    def post() -> None:
        try:
            with app.app_context():
                results.append(auth.second_factor(user_id, token, time.time(), code, "127.0.0.1"))
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(results) == 2
    assert sorted(bool(r.session_key) for r in results) == [False, True]
    assert [r.error for r in results if not r.session_key] == [auth.BAD_CODE]


def test_turning_two_factor_on_or_an_admins_reset_ends_the_users_other_sessions(user):
    from admin.services.staff import sessions

    for agent in ("Firefox", "Chrome"):
        sessions.start(user, "127.0.0.1", agent)
    db.session.commit()
    assert len(sessions.open_sessions(user)) == 2
    secret = totp.begin(user)
    totp.confirm(user, pyotp.TOTP(secret).now())
    assert sessions.open_sessions(user) == []  # signed in with the password alone: signed out
    sessions.start(user, "127.0.0.1", "Safari")
    db.session.commit()
    totp.reset(user)
    assert sessions.open_sessions(user) == []
