"""The one confirmation: what a bulk action or a tool showed before it starts a job, kept on the server.

Showing a confirmation (:func:`issue`) stores the job kind, its typed parameters (the criteria or the
ticked ids, the period, the options), what the page said (count, money per currency, ...), the user and an
expiry, and gives the page a random token (only its hash is kept). Running (:func:`run`) takes that token
back: from the same user, before it expires, once. The job then runs exactly the stored parameters; the
request may only set the options the confirmation itself asked for ("no receipt", a reason). The job kind's
parameter class and check apply both when the confirmation is shown and when the job starts.

A single action that is no job (one Stripe call: a transfer, deleting a connected account or a webhook
endpoint) is confirmed the same way: :func:`issue` with ``action=True`` keeps its name and its checked
parameters, :func:`find` takes the token back, and :func:`use` uses it up and returns those parameters,
which the view then acts on (never on values posted again).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, update

from admin.dbutil import immediate, rowcount
from admin.errors import ServiceError
from admin.extensions import db
from admin.models.jobs import Confirmation
from admin.services.core import audit
from admin.services.core import jobs as jobs_service
from admin.timeutil import utcnow

DEFAULT_SECONDS = 15 * 60


class ConfirmationRefused(ServiceError):
    """``step=run`` without a confirmation this user may use: nothing is started (answered 400)."""

    status = 400


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _lifetime() -> timedelta:
    return timedelta(seconds=float(current_app.config.get("CONFIRMATION_SECONDS", DEFAULT_SECONDS)))


def prepare(kind: str, params: dict[str, Any], later: tuple[str, ...] = ()) -> dict[str, Any]:
    """The job's parameters as its kind reads them (typed, bounded, checked): what a confirmation shows.
    ``later``: the options the confirmation asks for, checked when it is run."""
    return jobs_service.prepare(kind, params, later=later)


def is_action(row: Confirmation) -> bool:
    """Whether ``row`` confirms a single action (see :func:`use`) rather than a job."""
    return (row.shown or {}).get("single_action") is True


def issue(
    kind: str,
    params: dict[str, Any],
    *,
    processor_id: int | None,
    count: int | None,
    shown: dict[str, Any],
    action: bool = False,
) -> str:
    """Keep what a confirmation shows; returns the token its button posts back. Commits.
    ``action``: ``kind`` names a single action (not a job kind) and ``params`` are its checked values."""
    user_id, _ = audit.current_actor()
    if user_id is None:
        raise ServiceError("a confirmation is for a signed-in staff member")
    if action:
        if kind in jobs_service.kind_names():
            raise ServiceError(f"{kind} is a job kind, not a single action")
        params = json.loads(json.dumps(params, default=str))
        shown = {**shown, "single_action": True}
    else:
        params = prepare(kind, params, tuple(shown.get("option_names") or ()))
    token = secrets.token_urlsafe(32)
    now = utcnow()
    immediate()
    db.session.execute(delete(Confirmation).where(Confirmation.expires_at < now - timedelta(days=1)))
    db.session.add(
        Confirmation(
            token_hash=_hash(token),
            user_id=user_id,
            kind=kind,
            processor_id=processor_id,
            params=params,
            shown=shown,
            count=count,
            created_at=now,
            expires_at=now + _lifetime(),
        )
    )
    db.session.commit()
    return token


def find(token: str | None, kinds: tuple[str, ...]) -> Confirmation:
    """The confirmation ``token`` stands for, if the signed-in user may run it now; else ``ConfirmationRefused``
    saying why. Nothing is used up (see :func:`run`)."""
    token = (token or "").strip()
    if not token:
        raise ConfirmationRefused(
            "Nothing was started: confirm first (this needs the confirmation's own button)"
        )
    row = db.session.scalar(select(Confirmation).where(Confirmation.token_hash == _hash(token[:200])))
    user_id, _ = audit.current_actor()
    if row is None or row.kind not in kinds:
        raise ConfirmationRefused(
            "Nothing was started: this confirmation is unknown here; start again from the page"
        )
    if row.user_id != user_id:
        raise ConfirmationRefused(
            "Nothing was started: this confirmation was shown to someone else; start again from the page"
        )
    if row.used_at is not None:
        raise ConfirmationRefused(
            "Nothing was started: this confirmation has been used already; start again from the page"
        )
    if row.expires_at <= utcnow():
        minutes = int(_lifetime().total_seconds() // 60)
        raise ConfirmationRefused(
            f"Nothing was started: this confirmation has expired (they last {minutes} "
            f"minutes); start again from the page, which counts afresh"
        )
    return row


def use(row: Confirmation) -> dict[str, Any]:
    """Use the token up (once only, even when two requests race) and return the stored parameters: what a
    confirmed single action acts on. Commits."""
    immediate()
    used = rowcount(
        db.session.execute(
            update(Confirmation)
            .where(Confirmation.id == row.id, Confirmation.used_at.is_(None))
            .values(used_at=utcnow())
        )
    )
    db.session.commit()
    if not used:
        raise ConfirmationRefused(
            "Nothing was started: this confirmation has been used already; start again from the page"
        )
    return dict(row.params or {})


def run(row: Confirmation, options: dict[str, Any] | None = None) -> jobs_service.Started:
    """Start the confirmed job: its stored parameters, with ``options`` (only those the confirmation asked
    for) applied. Uses the token up (see :func:`use`). Commits."""
    if is_action(row):
        raise ConfirmationRefused("Nothing was started: this confirmation is not for a job")
    asked = set((row.shown or {}).get("option_names") or [])
    params = {**row.params, **{k: v for k, v in (options or {}).items() if k in asked}}
    params = prepare(row.kind, params)  # bounds and checks, as when it was shown
    use(row)
    return jobs_service.start(row.kind, params, processor_id=row.processor_id)
