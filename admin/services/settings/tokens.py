"""API tokens (``/settings/tokens``, ``tokens create|list|revoke``).

A token is shown once, when it is made: paydesk keeps only its SHA-256 digest, its first characters (so
people can tell tokens apart), a name, its scopes (``read`` for GET, ``write`` for everything else; a token may have both), an expiry and
when it was last used. Making and revoking one is audited.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from admin.dbutil import immediate
from admin.errors import ServiceError, check_text
from admin.extensions import db
from admin.models import TOKEN_SCOPES, ApiToken
from admin.services.core import audit
from admin.timeutil import utcnow

PREFIX = "pdk_"
MAX_DAYS = 3650
LAST_USED_EVERY = timedelta(minutes=1)  # last-used is written at most this often per token


@dataclass
class NewToken:
    token: ApiToken
    secret: str  # shown once


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def parse_scopes(scopes: list[str] | str | None) -> list[str]:
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes or [])
    items = [s.strip().lower() for s in items if s and s.strip()] or ["read"]
    bad = [s for s in items if s not in TOKEN_SCOPES]
    if bad:
        raise ServiceError(f"{bad[0][:20]!r} is not a scope (read, write)", field="scopes")
    return [s for s in TOKEN_SCOPES if s in items]


def create_token(
    name: str, scopes: list[str] | str | None = None, *, days: int | None = 90, created_by: str | None = None
) -> NewToken:
    """A new token. ``days`` None or 0: it never expires. Commits."""
    name = check_text(name, "Name", "name")
    if not name:
        raise ServiceError("give the token a name (what uses it)", field="name")
    if len(name) > 100:
        raise ServiceError("at most 100 characters, please", field="name")
    scope_list = parse_scopes(scopes)
    if days is not None and not 0 <= days <= MAX_DAYS:
        raise ServiceError(f"days must be between 0 (never expires) and {MAX_DAYS}", field="days")
    immediate()
    if db.session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise ServiceError(f"a token named {name!r} exists already", field="name")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        token_hash=digest(secret),
        prefix=secret[:10],
        scopes=",".join(scope_list),
        expires_at=utcnow() + timedelta(days=days) if days else None,
        created_by=created_by or audit.current_actor()[1],
    )
    db.session.add(token)
    db.session.flush()
    audit.record(
        "token.create",
        object_type="token",
        object_id=str(token.id),
        parameters={
            "name": name,
            "scopes": scope_list,
            "expires": token.expires_at.isoformat(timespec="minutes") if token.expires_at else None,
        },
        commit=False,
    )
    db.session.commit()
    return NewToken(token, secret)


def list_tokens() -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.id.desc())))


def find_token(ref: str | int) -> ApiToken | None:
    """A token by id or by name."""
    text = str(ref).strip()
    if text.isdigit():
        tok = db.session.get(ApiToken, int(text))
        if tok is not None:
            return tok
    return db.session.scalar(select(ApiToken).where(ApiToken.name == text))


def revoke_token(ref: str | int) -> ApiToken:
    """Revoke a token by id or name: it stops working at once. Commits."""
    immediate()
    token = find_token(ref)
    if token is None:
        raise ServiceError(f"no API token {str(ref)[:40]!r}", field="token")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(
            "token.revoke",
            object_type="token",
            object_id=str(token.id),
            parameters={"name": token.name},
            commit=False,
        )
    db.session.commit()
    return token


def authenticate(secret: str | None, now: datetime | None = None) -> tuple[ApiToken | None, str]:
    """The live token for ``secret``, or None and why ("missing", "unknown", "revoked", "expired")."""
    if not secret:
        return None, "missing"
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None, "unknown"
    want = digest(secret)
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == want))
    if token is None or not hmac.compare_digest(token.token_hash, want):
        return None, "unknown"
    state = token.status(now)
    if state != "active":
        return None, state
    return token, "active"


def touch(token: ApiToken, now: datetime | None = None) -> None:
    """Note the token's use (at most once a minute, in a statement of its own: the request's work is apart)."""
    now = now or utcnow()
    if token.last_used_at and now - token.last_used_at < LAST_USED_EVERY:
        return
    with db.engine.begin() as conn:
        conn.execute(
            update(ApiToken.__table__).where(ApiToken.__table__.c.id == token.id).values(last_used_at=now)
        )
    set_committed_value(token, "last_used_at", now)  # known to the session, not a change to flush
