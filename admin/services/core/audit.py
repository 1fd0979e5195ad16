"""The audit log: who did what, when, with which Stripe request.

``record`` is the one helper every staff action calls, with ``commit=False`` inside the
transaction that makes the change it describes. The actor is the signed-in staff member,
or the person a background job acts for (``acting_as``), or ``cli:<os user>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, ClassVar

from sqlalchemy import func, or_, select

from admin.dbutil import LIKE_ESCAPE, like_escaped
from admin.errors import StripeFailure, stripe_failure
from admin.extensions import db
from admin.listing import EXPORT_CHUNK, Filter, Page, keyset_page, processor_field, walk
from admin.models import AuditLog

_ACTING_AS: ContextVar[tuple[int | None, str] | None] = ContextVar("paydesk_acting_as", default=None)


@contextmanager
def acting_as(user_id: int | None, actor: str) -> Iterator[None]:
    """Attribute what happens inside to ``actor`` (a job runs for whoever started it)."""
    token = _ACTING_AS.set((user_id, actor))
    try:
        yield
    finally:
        _ACTING_AS.reset(token)


def current_actor() -> tuple[int | None, str]:
    """(user id, label) of whoever is acting: the signed-in staff member, the person a job acts
    for, or the CLI user."""
    override = _ACTING_AS.get()
    if override is not None:
        return override
    try:
        from flask import has_request_context
        from flask_login import current_user

        if has_request_context() and current_user and current_user.is_authenticated:
            return current_user.id, current_user.email
    except Exception:  # pragma: no cover - outside Flask
        pass
    import getpass
    import os

    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name for this uid (some containers)
        name = f"uid{os.getuid()}"
    return None, f"cli:{name}"[:255]


def record(
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    processor_id: int | None = None,
    parameters: dict[str, Any] | None = None,
    ok: bool = True,
    message: str | None = None,
    stripe_request_id: str | None = None,
    commit: bool = True,
    actor: str | None = None,
    user_id: int | None = None,
) -> AuditLog:
    """One audit entry. ``actor``/``user_id`` name who acted when it is not the signed-in user, the
    person a job acts for, or the CLI (a sign-in: the account signing in; a failed one: ``anonymous``)."""
    if actor is None:
        user_id, actor = current_actor()
    entry = AuditLog(
        user_id=user_id,
        actor=actor[:255],
        action=action,
        object_type=object_type,
        object_id=object_id and str(object_id)[:255],
        processor_id=processor_id,
        parameters=parameters,
        result="ok" if ok else "error",
        message=message and message[:4000],
        stripe_request_id=stripe_request_id and stripe_request_id[:255],
    )
    db.session.add(entry)
    if commit:
        db.session.commit()
    return entry


def about_user(
    action: str,
    user: Any,
    message: str | None = None,
    parameters: dict[str, Any] | None = None,
    *,
    email: bool = True,
    **how: Any,
) -> AuditLog:
    """One entry about a staff account (``user/<id>``: its sign-ins, password, role, sessions, two-factor
    sign-in), in the caller's transaction (``commit=False``): the account's email (``email=False``: left out)
    and ``parameters``; ``how``: ``record``'s ``ok``, ``actor``, ``user_id``."""
    return record(
        action,
        object_type="user",
        object_id=str(user.id),
        parameters={**({"email": user.email} if email else {}), **(parameters or {})},
        message=message,
        commit=False,
        **how,
    )


def stripe_failed(
    action: str,
    err,
    *,
    processor_id: int | None,
    object_type: str | None = None,
    object_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    what: str | None = None,
    with_request: bool = False,
    doing: str | None = None,
) -> StripeFailure:
    """The one record of a staff action's failed Stripe call (a ``GatewayError``): what the transaction held is
    rolled back, the failure audited on its own (commits) with Stripe's request id, and returned as staff read
    it (``admin.errors.stripe_failure(err, what or object_type, object_id, ...)``) for the caller to raise."""
    db.session.rollback()
    record(
        action,
        object_type=object_type,
        object_id=object_id,
        processor_id=processor_id,
        parameters=parameters,
        ok=False,
        message=f"Stripe: {err}",
        stripe_request_id=getattr(err, "request_id", None),
        commit=True,
    )
    return stripe_failure(err, what or object_type, object_id, with_request=with_request, doing=doing)


# -- the /audit page ------------------------------------------------------------------------


@dataclass
class AuditFilter(Filter):
    LABELS: ClassVar[dict[str, str]] = {"actor": "Who", "q": "Object or Stripe request id"}

    actor: str | None = None
    action: list[str] = field(default_factory=list)
    result: str | None = field(default=None, metadata={"choices": ("ok", "error")})
    ppid: int | None = processor_field()
    since: datetime | None = None
    until: datetime | None = field(default=None, metadata={"end": True})
    q: str | None = None

    def check(self, errors: dict[str, str]) -> None:
        if self.since and self.until and self.since >= self.until:
            errors["until"] = "must be after the start date"


def audit_query(flt: AuditFilter):
    q = select(AuditLog)
    if flt.actor:
        q = q.where(func.lower(AuditLog.actor) == flt.actor.strip().lower())
    if flt.action:
        exact = [a for a in flt.action if not a.endswith("*")]
        conds = [AuditLog.action.in_(exact)] if exact else []
        conds += [
            AuditLog.action.like(like_escaped(a[:-1]) + "%", escape=LIKE_ESCAPE)
            for a in flt.action
            if a.endswith("*")
        ]
        q = q.where(or_(*conds))
    if flt.result:
        q = q.where(AuditLog.result == flt.result)
    if flt.ppid is not None:
        q = q.where(AuditLog.processor_id == flt.ppid)
    if flt.since:
        q = q.where(AuditLog.at >= flt.since)
    if flt.until:
        q = q.where(AuditLog.at < flt.until)
    if flt.q:
        text = flt.q.strip()
        q = q.where(
            or_(
                AuditLog.object_id == text,
                AuditLog.stripe_request_id == text,
                func.lower(AuditLog.actor) == text.lower(),
            )
        )
    return q


def audit_page(flt: AuditFilter) -> Page:
    return keyset_page(audit_query(flt), [AuditLog.id], flt)


def audit_dict(a: AuditLog) -> dict[str, Any]:
    return {
        "id": a.id,
        "at": a.at.isoformat(timespec="seconds") if a.at else None,
        "actor": a.actor,
        "action": a.action,
        "object_type": a.object_type,
        "object_id": a.object_id,
        "processor_id": a.processor_id,
        "parameters": a.parameters,
        "result": a.result,
        "message": a.message,
        "stripe_request_id": a.stripe_request_id,
    }


def audit_rows(flt: AuditFilter, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Every entry the filter matches (at most ``limit``), newest first, as dicts, a keyset chunk at a time
    (the CSV of /audit and ``audit list``)."""
    chunk = min(limit or EXPORT_CHUNK, EXPORT_CHUNK)
    rows = (a for part in walk(audit_query(flt), [AuditLog.id], flt, scalars=True, chunk=chunk) for a in part)
    yield from (audit_dict(a) for a in islice(rows, limit))


def actions() -> list[str]:
    return list(db.session.scalars(select(AuditLog.action).distinct().order_by(AuditLog.action)))


def for_object(object_type: str, object_id: str, limit: int = 50) -> list[AuditLog]:
    return list(
        db.session.scalars(
            select(AuditLog)
            .where(AuditLog.object_type == object_type, AuditLog.object_id == str(object_id))
            .order_by(AuditLog.id.desc())
            .limit(limit)
        )
    )
