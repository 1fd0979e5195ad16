"""A staff action's idempotency key for Stripe: ``paydesk-<verb>[-<object>]-<action>[-<extra>...]``.

The action part is the same for one staff action, so a retried or double submitted request makes Stripe act
once, and new for a new action. It comes from the form (a page carries a fresh :func:`new_action_key`, for the
actions that are not confirmed first: cancel or capture an intent, add or remove a card, create a connected
account or a webhook endpoint), from a confirmation (which stores one with what it showed: a refund, a staff
charge, a transfer), from a job (``job<id>``, so a unit run again after a crash asks Stripe once) or from the
CLI (``cli<key>``). Anything else (none given, or not a plain key) gets a fresh one.
"""

from __future__ import annotations

import hashlib
import re
import uuid

_KEY_OK = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_STRIPE_MAX = 255  # Stripe refuses longer idempotency keys
_DIGEST = 64  # characters of a sha256 in hex


def new_action_key() -> str:
    """A fresh key for one staff action."""
    return uuid.uuid4().hex


def action_key(given: str | None) -> str:
    """``given`` when it is a plain key (letters, digits, ``_.:-``, at most 100), else a fresh one."""
    return given if given and _KEY_OK.match(given) else new_action_key()


def idempotency_key(verb: str, object_id: str | None, given: str | None, *extra: object) -> str:
    """``paydesk-<verb>[-<object>]-<action>[-<extra>...]``, stable for one staff action on one object;
    ``extra`` (an amount) tells apart what differs within one action.

    Within Stripe's 255 characters: a longer key (a very long object id) becomes its first characters, a dash
    and the sha256 of the whole key, so two different long keys never become the same one."""
    parts = ["paydesk", verb, *([object_id] if object_id else []), action_key(given), *map(str, extra)]
    key = "-".join(parts)
    if len(key) <= _STRIPE_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: _STRIPE_MAX - _DIGEST - 1]}-{digest}"
