"""Helpers for the one confirmation (views/confirm.py): read the token a confirmation carries and post its
button the way a browser does."""

from __future__ import annotations

import re
from html import unescape


def token_of(html: str) -> str:
    """The confirmation's token, from its hidden input."""
    found = re.search(r'name="token" value="([^"]+)"', html)
    assert found, "no confirmation token in:\n" + html[:2000]
    return unescape(found.group(1))


def confirm(client, url: str, shown, data: dict | None = None, **kwargs):
    """Post the confirmation ``shown`` (a response or its HTML) answered: ``step=run``, its token, and
    ``data`` (the options, the CSRF token)."""
    html = shown if isinstance(shown, str) else shown.get_data(as_text=True)
    return client.post(url, data={"step": "run", "token": token_of(html), **(data or {})}, **kwargs)
