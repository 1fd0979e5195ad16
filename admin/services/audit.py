"""The audit log: who did what, when, with which Stripe request."""

from __future__ import annotations

from typing import Any

from ..extensions import db
from ..models import AuditLog


def current_actor() -> tuple[int | None, str]:
    """(user id, label) of whoever is acting: the signed-in staff member, or the CLI user."""
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


def record(action: str, *, object_type: str | None = None, object_id: str | None = None,
           processor_id: int | None = None, parameters: dict[str, Any] | None = None, ok: bool = True,
           message: str | None = None, stripe_request_id: str | None = None, commit: bool = True,
           actor: str | None = None, user_id: int | None = None) -> AuditLog:
    """One audit entry. ``actor``/``user_id`` name who acted when it is not the signed-in user or the CLI
    (a sign-in: the account signing in; a failed one: ``anonymous``)."""
    if actor is None:
        user_id, actor = current_actor()
    entry = AuditLog(user_id=user_id, actor=actor, action=action, object_type=object_type, object_id=object_id,
                     processor_id=processor_id, parameters=parameters, result="ok" if ok else "error",
                     message=message, stripe_request_id=stripe_request_id)
    db.session.add(entry)
    if commit:
        db.session.commit()
    return entry
