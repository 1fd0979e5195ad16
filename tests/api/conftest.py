"""Fixtures for /api/v1: tokens of each scope and a client that sends one."""

from __future__ import annotations

import itertools

import pytest

_names = itertools.count(1)


@pytest.fixture
def make_token(app):
    """make_token("read") / make_token("write") -> the secret of a new token with those scopes."""
    from admin.services.settings.tokens import create_token

    def make(*scopes: str, days: int | None = 90, name: str | None = None) -> str:
        return create_token(name or f"robot {next(_names)}", list(scopes) or ["read"], days=days).secret

    return make


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def reader(make_token) -> dict[str, str]:
    return bearer(make_token("read"))


@pytest.fixture
def writer(make_token) -> dict[str, str]:
    return bearer(make_token("read", "write"))
