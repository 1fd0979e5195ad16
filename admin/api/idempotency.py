"""Client ``Idempotency-Key`` headers on writes, honoured as Stripe honours them.

The first request with a key (per token) is done and its answer kept (``api_idempotency_key``); the same
key with the same method, path (with its query string: ``?ppid=``) and body gets that answer again
(``Idempotent-Replayed: true``), and nothing is done twice; the same key with anything else is 409. A request
still running under the key makes a second one 409 too, unless its claim is older than twice gunicorn's
timeout (``API_IDEMPOTENCY_STALE_SECONDS``): that request died (its worker was killed) and the key is free again. As at
Stripe, a request refused by validation keeps no answer (it is checked before this runs), and neither does a
server error (5xx) nor a Stripe failure worth trying again (503, after the gateway's retries): the key may be
tried again. Stripe's definite refusals are kept: 402 for a declined card, 502 otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from flask import current_app, g, request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from admin.errors import ServiceError, StripeFailure
from admin.extensions import db
from admin.models import ApiIdempotencyKey

from .errors import ApiError, api_error_response

HEADER = "Idempotency-Key"


def request_hash() -> str:
    body = request.get_json(silent=True)
    canonical = (
        json.dumps(body, sort_keys=True, separators=(",", ":"))
        if body is not None
        else request.get_data(as_text=True)
    )
    return hashlib.sha256(f"{request.method} {request.full_path}\n{canonical}".encode()).hexdigest()


def stale_after() -> timedelta:
    """How old a claim whose request never finished (status NULL) may be before the key is free again:
    ``API_IDEMPOTENCY_STALE_SECONDS``, twice gunicorn's worker timeout (a request running longer has died)."""
    return timedelta(seconds=float(current_app.config["API_IDEMPOTENCY_STALE_SECONDS"]))


def stripe_key(action: str) -> str | None:
    """Stripe's idempotency key for the write this request makes, from the token and the client's key (None
    without one): the client's retry reaches Stripe with the same key, so Stripe does the write once."""
    key = (request.headers.get(HEADER) or "").strip()
    if not key:
        return None
    return f"paydesk-api-{action}-{g.api_token.id}-{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def _claim(token_id: int, key: str, digest: str) -> bool:
    """Claim the key for this request (True), or False when another request holds it or answered it. A claim
    left by a request that died (no answer, older than ``stale_after``) is taken over, by one request only."""
    table = ApiIdempotencyKey.__table__
    try:
        with db.engine.begin() as conn:  # claimed in a transaction of its own, before the work
            conn.execute(
                table.insert().values(token_id=token_id, key=key, request_hash=digest, created_at=_now())
            )
        return True
    except IntegrityError:
        pass
    now = _now()
    with db.engine.begin() as conn:
        taken = conn.execute(
            update(table)
            .where(
                table.c.token_id == token_id,
                table.c.key == key,
                table.c.request_hash == digest,
                table.c.status_code.is_(None),
                table.c.created_at < now - stale_after(),
            )
            .values(created_at=now)
        ).rowcount
    return taken == 1


def idempotent(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any):
        key = (request.headers.get(HEADER) or "").strip()
        if not key:
            return view(*args, **kwargs)
        if len(key) > 255 or not key.isprintable():
            raise ApiError(400, "invalid_request", f"{HEADER}: at most 255 printable characters", HEADER)
        token_id = g.api_token.id
        digest = request_hash()
        table = ApiIdempotencyKey.__table__
        if not _claim(token_id, key, digest):
            with db.engine.connect() as conn:
                seen = conn.execute(
                    select(table).where(table.c.token_id == token_id, table.c.key == key)
                ).first()
            if seen is None:  # pragma: no cover - removed meanwhile (a 5xx): refuse rather than guess
                raise ApiError(
                    409,
                    "conflict",
                    "A request with this Idempotency-Key is being retried; try again.",
                    HEADER,
                ) from None
            if seen.request_hash != digest:
                raise ApiError(
                    409,
                    "conflict",
                    "This Idempotency-Key was used with another request (method, "
                    "path or body); use a new key.",
                    HEADER,
                ) from None
            if seen.status_code is None:
                raise ApiError(
                    409, "conflict", "The first request with this Idempotency-Key is still running.", HEADER
                ) from None
            resp = current_app.response_class(
                seen.response_body, status=seen.status_code, mimetype="application/json"
            )
            resp.headers["Idempotent-Replayed"] = "true"
            return resp
        try:
            resp = current_app.make_response(view(*args, **kwargs))
        except (ApiError, ServiceError) as err:
            resp = api_error_response(err)
            definite = isinstance(err, StripeFailure) and not err.transient  # Stripe's answer: 402, 502
        except Exception:
            _forget(token_id, key)
            raise
        else:
            definite = False
        if resp.status_code >= 500 and not definite:  # a server error, or Stripe worth trying again (503)
            _forget(token_id, key)
            return resp
        with db.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.token_id == token_id, table.c.key == key)
                .values(status_code=resp.status_code, response_body=resp.get_data(as_text=True))
            )
        return resp

    return wrapped


def _forget(token_id: int, key: str) -> None:
    table = ApiIdempotencyKey.__table__
    with db.engine.begin() as conn:
        conn.execute(delete(table).where(table.c.token_id == token_id, table.c.key == key))


def _now():
    from admin.timeutil import utcnow

    return utcnow()
