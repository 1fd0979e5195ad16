"""Token authentication, scopes, the per-token rate limit, and who the API acts as.

Every ``/api/v1`` request but the OpenAPI document carries ``Authorization: Bearer <token>``: a missing,
unknown, revoked or expired token is 401; a GET needs the ``read`` scope and anything else ``write``
(403 otherwise). Each token may make ``API_RATE_LIMIT`` calls (default 100 per 60 seconds, as the
connector has), counted by Flask-Limiter in the storage paydesk already uses (shared by every process);
past it: 429 with ``Retry-After``. Writes are audited with the token's name as the actor (``api:<name>``).
"""

from __future__ import annotations

from flask import current_app, g, request

from admin.limiter import spend
from admin.services.core import audit
from admin.services.settings import tokens

from .errors import ApiError

PUBLIC_ENDPOINTS = {"api.openapi"}
REASONS = {
    "missing": "Send the token as 'Authorization: Bearer <token>'.",
    "unknown": "This token is not known.",
    "revoked": "This token was revoked.",
    "expired": "This token has expired.",
}


def bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def needed_scope() -> str:
    return "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"


def authenticate() -> None:
    """Before every API request: the token, its scope, its rate limit; then act as it."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    token, why = tokens.authenticate(bearer())
    if token is None:
        raise ApiError(
            401, "unauthorized", REASONS[why], headers={"WWW-Authenticate": 'Bearer realm="paydesk"'}
        )
    wait = spend(
        current_app.config.get("API_RATE_LIMIT") or "100 per 60 seconds",
        f"token{token.id}",
        scope="api-token",
    )
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests for this token; try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        )
    scope = needed_scope()
    if scope not in token.scope_list:
        raise ApiError(403, "forbidden", f"This token has no {scope} scope.")
    tokens.touch(token)
    g.api_token = token
    acting = audit.acting_as(None, f"api:{token.name}")
    acting.__enter__()
    g.api_acting = acting


def stop_acting(_exc=None) -> None:
    acting = g.pop("api_acting", None)
    if acting is not None:
        acting.__exit__(None, None, None)
