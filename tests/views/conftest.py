"""What the view tests share beyond tests/conftest.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def service_calls(monkeypatch):
    """A spy on a money service (what reaches Stripe): ``calls = service_calls(refunds, "refund")`` lists the
    request each call got; the service still runs."""

    def spy_on(module, name: str) -> list:
        calls: list = []
        real = getattr(module, name)

        def spy(processor, req):
            calls.append(req)
            return real(processor, req)

        monkeypatch.setattr(module, name, spy)
        return calls

    return spy_on
