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
        raise ServiceError(
            f"{label}: remove the control character (U+{ord(bad):04X}); only printable text is kept",
            field=field,
        )
    return value


class StripeFailure(ServiceError):
    """A Stripe request that failed, as a service reports it (services translate the gateway's ``GatewayError``
    with :func:`stripe_failure`, or ``core.stripe_reader.stripe_failures`` around a whole function, so views and
    the CLI never import the gateway). ``message`` is what staff read; ``detail`` the whole story for logs
    (operation, code, request id); ``transient``: worth trying again later; ``card``: Stripe declined a card (its
    ``card_error``, HTTP 402)."""

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        request_id: str | None = None,
        transient: bool = False,
        not_found: bool = False,
        card: bool = False,
    ):
        super().__init__(message)
        self.detail = detail or message
        self.request_id = request_id
        self.transient = transient
        self.not_found = not_found
        self.card = card


def stripe_failure(
    err,
    what: str | None = None,
    object_id: str | None = None,
    *,
    with_request: bool = False,
    doing: str | None = None,
) -> StripeFailure:
    """The one translation of a failed Stripe request (a ``GatewayError``) into what staff read: which object
    Stripe does not have (``what`` and ``object_id``: "Stripe: there is no charge ch_..."), rather than its bare
    "Not Found"; otherwise what Stripe said ("Stripe: ...", or "Stripe did not create the product: ..." with
    ``doing``). ``with_request`` adds Stripe's request id (what Stripe's support asks for). The result keeps
    the request id, whether trying again later may help, and the gateway's whole story as ``detail``."""
    rid = getattr(err, "request_id", None)
    not_found = bool(getattr(err, "not_found", False))
    suffix = f" (Stripe request {rid})" if with_request and rid else ""
    if not_found and object_id:
        message = f"Stripe: there is no {what} {object_id} on this account (or it was deleted){suffix}"
    else:
        message = f"Stripe{' ' + doing if doing else ''}: {getattr(err, 'message', None) or err}{suffix}"
    card = getattr(err, "kind", None) == "card_error" or getattr(err, "http_status", None) == 402
    return StripeFailure(
        message,
        detail=str(err),
        request_id=rid,
        transient=bool(getattr(err, "transient", False)),
        not_found=not_found,
        card=card,
    )
