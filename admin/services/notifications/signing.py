"""The signature on every notification: Stripe's scheme under paydesk's name.

``Paydesk-Signature: t=<unix time>,v1=<hex>[,v1=<hex>]``, each ``v1`` the HMAC-SHA256 of
``"<t>.<raw body>"`` keyed with one of the URL's secrets (two while a secret is rotated). A receiver
accepts the notification when any ``v1`` matches its secret and ``t`` is recent.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Paydesk-Signature"
SECRET_PREFIX = "pdwhsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def header(signing_secrets: list[str], body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}"] + [f"v1={signature(s, t, body)}" for s in signing_secrets])


def verify(secret: str, value: str, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """True when ``value`` (the header) carries a ``v1`` of ``secret`` over ``body`` made within ``tolerance``."""
    parts = [p.split("=", 1) for p in value.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    if not stamps or not stamps[0].strip().isdigit():
        return False
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    want = signature(secret, t, body)
    return any(hmac.compare_digest(want, v.strip()) for k, v in parts if k.strip() == "v1")
