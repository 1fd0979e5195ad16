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
