"""The audit log: who did what, when, with which Stripe request.

``record`` is the one helper every staff action calls, with ``commit=False`` inside the
transaction that makes the change it describes. The actor is the signed-in staff member,
or the person a background job acts for (``acting_as``), or ``cli:<os user>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..extensions import db
from ..models import AuditLog

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

    return None, f"cli:{getpass.getuser()}"


def record(action: str, *, object_type: str | None = None, object_id: str | None = None,
           processor_id: int | None = None, parameters: dict[str, Any] | None = None, ok: bool = True,
           message: str | None = None, stripe_request_id: str | None = None, commit: bool = True) -> AuditLog:
    user_id, actor = current_actor()
    entry = AuditLog(user_id=user_id, actor=actor[:255], action=action, object_type=object_type,
                     object_id=object_id and str(object_id)[:255], processor_id=processor_id,
                     parameters=parameters, result="ok" if ok else "error",
                     message=message and message[:4000], stripe_request_id=stripe_request_id and stripe_request_id[:255])
    db.session.add(entry)
    if commit:
        db.session.commit()
    return entry
