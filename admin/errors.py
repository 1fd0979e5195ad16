"""Errors of business operations, with messages fit to show staff. Imports nothing from the app."""


class ServiceError(Exception):
    """A failed business operation, with a message fit to show staff."""

    not_found: bool = False  # Stripe has no such object (see stripe_refusal)

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def check_text(value: str | None, label: str, field: str | None = None, *, multiline: bool = False) -> str:
    """A text a staff member saves (a name, an email, a reason), stripped; a ``ServiceError`` naming the field
    when it holds a control character (a NUL, an escape, a line break where one line is meant), which no
    one types on purpose and which other systems (Stripe's metadata, CSV exports, terminals) mishandle."""
    value = (value or "").strip()
    allowed = "\n\t" if multiline else ""
    bad = next((ch for ch in value if (ord(ch) < 32 or 127 <= ord(ch) < 160) and ch not in allowed), None)
    if bad is not None:
        raise ServiceError(f"{label}: remove the control character (U+{ord(bad):04X}); only printable text is kept",
                           field=field)
    return value


def stripe_refusal(err, what: str, object_id: str | None = None) -> ServiceError:
    """A failed Stripe request (a ``GatewayError``) as staff read it: which object Stripe does not have, rather
    than its bare "Not Found"; otherwise what Stripe said."""
    if getattr(err, "not_found", False) and object_id:
        refusal = ServiceError(f"Stripe: there is no {what} {object_id} on this account (or it was deleted)")
        refusal.not_found = True  # the API answers 404
        return refusal
    return ServiceError(f"Stripe: {err.message}")
