"""Errors of business operations, with messages fit to show staff. Imports nothing from the app."""


class ServiceError(Exception):
    """A failed business operation, with a message fit to show staff."""

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


def stripe_refusal(err, what: str, object_id: str | None = None, *, with_request: bool = False) -> ServiceError:
    """A failed Stripe request (a ``GatewayError``) as staff read it: which object Stripe does not have, rather
    than its bare "Not Found"; otherwise what Stripe said. ``with_request`` adds Stripe's request id (what
    Stripe's support asks for)."""
    rid = getattr(err, "request_id", None)
    suffix = f" (Stripe request {rid})" if with_request and rid else ""
    if getattr(err, "not_found", False) and object_id:
        refusal = ServiceError(f"Stripe: there is no {what} {object_id} on this account (or it was deleted){suffix}")
        refusal.not_found = True  # the API answers 404
        return refusal
    return ServiceError(f"Stripe: {err.message}{suffix}")


class StripeFailure(ServiceError):
    """A Stripe request that failed, as a service reports it (services translate the gateway's ``GatewayError``
    with ``core.stripe_reader.stripe_failures``, so views and the CLI never import the gateway). ``detail`` is
    the whole story for logs (operation, code, request id); ``transient``: worth trying again later."""

    def __init__(self, message: str, *, detail: str | None = None, request_id: str | None = None,
                 transient: bool = False, not_found: bool = False):
        super().__init__(message)
        self.detail = detail or message
        self.request_id = request_id
        self.transient = transient
        self.not_found = not_found
