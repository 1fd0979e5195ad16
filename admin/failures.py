"""What kind of failure an exception is: worth retrying later, or not. Shared by the worker and the outbox."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .crypto import SecretDecryptError
from .stripe_gateway import GatewayError


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, GatewayError):
        return exc.transient
    if isinstance(exc, SecretDecryptError):
        return True  # a wrong PAYDESK_ENCRYPTION_KEY: retried with backoff once it is fixed
    if isinstance(exc, IntegrityError):
        return True  # a concurrent event created the same record first: run again and find it
    if isinstance(exc, OperationalError):
        return True  # database busy, deadlock detected, connection lost
    if isinstance(exc, OSError):
        return True  # SMTP server or disk not reachable right now
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def describe(exc: Exception) -> str:
    """One line for staff: where it failed and why (with Stripe's request id when there is one)."""
    if isinstance(exc, GatewayError):
        return f"Stripe: {exc}"
    if isinstance(exc, DBAPIError):
        return f"database: {type(exc.orig).__name__}: {str(exc.orig).strip().splitlines()[0][:500]}"
    return f"{type(exc).__name__}: {exc}"
