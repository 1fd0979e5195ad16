"""Helpers for tests of staff accounts: an account with two-factor sign-in on, codes as the app shows them,
signing in through both steps."""

from __future__ import annotations

import time

import pyotp
from conftest import PASSWORD, csrf_token_from

from admin import crypto
from admin.services.staff import totp
from admin.services.staff.users import find_user


def enrol(email: str) -> tuple[str, list[str]]:
    """Turn two-factor sign-in on for ``email`` as its owner would; (secret, recovery codes)."""
    user = find_user(email)
    secret = totp.begin(user)
    codes = totp.confirm(user, pyotp.TOTP(secret).now())
    return secret, codes


def secret_of(email: str) -> str:
    return crypto.decrypt(find_user(email).totp_secret)


def next_code(secret: str) -> str:
    """The code for the next 30-second step (accepted, and not the one just used to enrol)."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def post_password(client, email: str, password: str = PASSWORD, addr: str | None = None):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    extra = {"environ_base": {"REMOTE_ADDR": addr}} if addr else {}
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token}, **extra)


def post_code(client, code: str):
    token = csrf_token_from(client.get("/login/code").get_data(as_text=True))
    return client.post("/login/code", data={"code": code, "csrf_token": token})
