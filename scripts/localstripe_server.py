"""Start localstripe bound to loopback with no persistence (its own CLI binds all
interfaces and pickles state to a shared file under /tmp).

    python scripts/localstripe_server.py [--port 8420]

It also teaches localstripe (1.15) a few things Stripe does that paydesk relies on
(``closer_to_stripe``), so tests and ``make demo`` exercise the real calls: cancellation
reasons, ``amount_capturable``, intents and charges listed by ``created``, lists newest first, and
``description`` / ``statement_descriptor_suffix`` / ``receipt_email`` on PaymentIntents
(checked the way Stripe checks them: a suffix of at most 22 characters, none of ``<>\\'"*``),
a staff charge's Connect options (``application_fee_amount``, ``transfer_data``, ``transfer_group``) and
``off_session`` on confirm, refunds with ``reason``/``refund_application_fee``/``reverse_transfer`` that
refuse more than is left to refund, every answer named by a ``Request-Id``, products with ``images``
(Stripe's list of up to 8 URLs) and ``active`` / ``shippable`` read as booleans on update, and
idempotency keys: a POST sent again with the same ``Idempotency-Key`` (same API key, path and
body) is answered with the first answer (``Idempotent-Replayed: true``) instead of being done twice.
"""

import argparse
import logging
import time
import uuid

from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import PaymentIntent, Store
from localstripe.server import app

CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")


def closer_to_stripe() -> None:
    """- cancel takes ``cancellation_reason`` (Stripe's four), and the intent then shows it and ``canceled_at``
    (localstripe answers 400 "Unexpected cancellation_reason");
    - an intent waiting for capture shows ``amount_capturable``;
    - the intents list takes ``created[gte|gt|lte|lt]`` and ``customer`` (localstripe answers 400), and the
      charges list ``created[gte|gt|lte|lt]`` (localstripe takes ``gt`` alone, else answers 500);
    - lists are newest first, as Stripe's are (localstripe lists oldest first, so a new customer or
      event fell off the first page once a long test session had made a hundred)."""
    from localstripe.resources import Charge, List, PaymentIntent, UserError, try_convert_to_int
    from localstripe.server import api_extra

    PaymentIntent.cancellation_reason = None
    PaymentIntent.canceled_at = None
    PaymentIntent.amount_capturable = property(
        lambda self: self.amount if self.status == "requires_capture" else 0
    )

    plain_cancel = PaymentIntent._api_cancel

    def cancel(id, cancellation_reason=None, **kwargs):
        if cancellation_reason is not None and cancellation_reason not in CANCELLATION_REASONS:
            raise UserError(
                400, f"Invalid cancellation_reason: must be one of {', '.join(CANCELLATION_REASONS)}"
            )
        obj = plain_cancel(id, **kwargs)
        obj.cancellation_reason = cancellation_reason
        obj.canceled_at = int(time.time())
        return obj

    plain_confirm = PaymentIntent._api_confirm

    def confirm(id, off_session=None, **kwargs):
        """Confirm takes ``off_session`` (a staff charge of a saved card: the customer is not there)."""
        return plain_confirm(id, **kwargs)

    handlers = {"/v1/payment_intents/{id}/cancel": cancel, "/v1/payment_intents/{id}/confirm": confirm}
    for resource in app.router.resources():  # the route holds the original function: replace its handler
        if resource.canonical in handlers:
            for route in resource:
                route._handler = api_extra(handlers[resource.canonical], resource.canonical)

    checks = {
        "gte": lambda a, b: a >= b,
        "gt": lambda a, b: a > b,
        "lte": lambda a, b: a <= b,
        "lt": lambda a, b: a < b,
    }

    def created_within(objects, created):
        """Stripe's ``created`` list filter: a time, or any of ``gte``/``gt``/``lte``/``lt`` together."""
        bounds = (
            created if isinstance(created, dict) else ({"gte": created, "lte": created} if created else {})
        )
        if any(op not in checks or not isinstance(try_convert_to_int(v), int) for op, v in bounds.items()):
            raise UserError(400, "Bad created filter")
        return [
            o
            for o in objects
            if all(checks[op](o.created, try_convert_to_int(v)) for op, v in bounds.items())
        ]

    plain_list = PaymentIntent._api_list_all.__func__

    def list_all(cls, url, created=None, customer=None, **kwargs):
        li = plain_list(cls, url, **kwargs)
        li._list = [
            pi for pi in created_within(li._list, created) if customer is None or pi.customer == customer
        ]
        return li

    PaymentIntent._api_list_all = classmethod(list_all)

    # Charges: localstripe takes only created[gt] and answers 500 "Not implemented" to created[gte]
    # (what "retry all" and reconcile send), to a time, or to two bounds together.
    plain_charges = Charge._api_list_all.__func__

    def list_charges(cls, url, created=None, **kwargs):
        li = plain_charges(cls, url, **kwargs)
        li._list = created_within(li._list, created)
        return li

    Charge._api_list_all = classmethod(list_charges)

    plain_position = List._compute_starting_pos

    def newest_first(self):
        if self._starting_pos is None:  # once per list, before it is paged
            ranked = sorted(
                enumerate(self._list), key=lambda x: (getattr(x[1], "created", 0) or 0, x[0]), reverse=True
            )
            self._list = [obj for _, obj in ranked]
        plain_position(self)

    List._compute_starting_pos = newest_first
    _accept_intent_descriptions()
    _accept_staff_payment_options()
    _refunds_like_stripe()
    _replay_idempotent_requests()


_FORBIDDEN = set("<>\\'\"*")


def _accept_intent_descriptions() -> None:
    original = PaymentIntent.__init__
    if getattr(original, "paydesk_patched", False):
        return

    def __init__(self, description=None, statement_descriptor_suffix=None, receipt_email=None, **kwargs):
        if description is not None and (not isinstance(description, str) or len(description) > 1000):
            raise UserError(400, "Invalid description")
        suffix = statement_descriptor_suffix
        if suffix is not None and (
            not isinstance(suffix, str) or not 1 <= len(suffix) <= 22 or set(suffix) & _FORBIDDEN
        ):
            raise UserError(400, "Invalid statement_descriptor_suffix")
        original(self, **kwargs)
        self.description = description
        self.statement_descriptor_suffix = suffix
        self.receipt_email = receipt_email

    __init__.paydesk_patched = True
    PaymentIntent.__init__ = __init__


def _accept_staff_payment_options() -> None:
    """A staff charge of a saved customer (issue 19) sends Connect's options on the PaymentIntent:
    ``application_fee_amount`` (a positive integer, at most the amount), ``transfer_data[destination]`` (an
    ``acct_`` id), ``transfer_group`` and ``on_behalf_of``. localstripe answers 400 "Unexpected ..."; they are
    kept on the intent as Stripe shows them (no money moves between accounts here)."""
    from localstripe.resources import try_convert_to_int

    original = PaymentIntent.__init__
    if getattr(original, "paydesk_connect", False):
        return

    def __init__(
        self,
        application_fee_amount=None,
        transfer_data=None,
        transfer_group=None,
        on_behalf_of=None,
        **kwargs,
    ):
        fee = try_convert_to_int(application_fee_amount) if application_fee_amount is not None else None
        amount = try_convert_to_int(kwargs.get("amount"))
        if fee is not None and (
            not isinstance(fee, int) or fee < 0 or (isinstance(amount, int) and fee > amount)
        ):
            raise UserError(
                400,
                "Invalid application_fee_amount: must be a non-negative integer no greater than the amount",
            )
        destination = (transfer_data or {}).get("destination") if isinstance(transfer_data, dict) else None
        if transfer_data is not None and not (
            isinstance(destination, str) and destination.startswith("acct_")
        ):
            raise UserError(
                400, "Invalid transfer_data[destination]: must be a connected account id (acct_...)"
            )
        original(self, **kwargs)
        self.application_fee_amount = fee
        self.transfer_data = {"destination": destination} if destination else None
        self.transfer_group = transfer_group
        self.on_behalf_of = on_behalf_of

    __init__.paydesk_connect = True
    __init__.paydesk_patched = True
    PaymentIntent.__init__ = __init__


REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def _refunds_like_stripe() -> None:
    """Refunds take ``reason`` (Stripe's three), ``refund_application_fee`` and ``reverse_transfer`` (localstripe
    answers 400 "Unexpected ..."), and Stripe refuses more than is left to refund of the charge (localstripe
    refunded any amount)."""
    from localstripe.resources import Charge, Refund, try_convert_to_bool, try_convert_to_int

    original = Refund.__init__
    if getattr(original, "paydesk_patched", False):
        return

    def __init__(self, reason=None, refund_application_fee=None, reverse_transfer=None, **kwargs):
        if reason is not None and reason not in REFUND_REASONS:
            raise UserError(400, f"Invalid reason: must be one of {', '.join(REFUND_REASONS)}")
        for name, value in (
            ("refund_application_fee", refund_application_fee),
            ("reverse_transfer", reverse_transfer),
        ):
            if value is not None and not isinstance(try_convert_to_bool(value), bool):
                raise UserError(400, f"Invalid boolean: {name}")
        charge_id = kwargs.get("charge")
        amount = try_convert_to_int(kwargs.get("amount"))
        if isinstance(charge_id, str) and charge_id.startswith("ch_"):
            charge = Charge._api_retrieve(charge_id)
            left = charge.amount - charge.amount_refunded
            if isinstance(amount, int) and amount > left:
                raise UserError(
                    400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
                )
            if left <= 0:
                raise UserError(
                    400, f"Charge {charge_id} has already been refunded.", {"code": "charge_already_refunded"}
                )
        original(self, **kwargs)
        self.reason = reason

    __init__.paydesk_patched = True
    Refund.__init__ = __init__


def _products_like_stripe() -> None:
    """Products take ``images`` (a list of up to 8 URLs; localstripe answers 400 "Unexpected images") and an
    create and update read ``shippable`` (and an update ``active``) as booleans (localstripe refused
    "true" on create and kept the text "false", which is true, on update)."""
    from localstripe.resources import Product, try_convert_to_bool

    original = Product.__init__
    if getattr(original, "paydesk_patched", False):
        return

    def _images(images):
        if images in (None, ""):
            return []
        if isinstance(images, dict):  # images[0]=...&images[1]=... as a form decodes it
            images = [images[k] for k in sorted(images, key=lambda k: int(k) if str(k).isdigit() else 0)]
        if (
            not isinstance(images, list)
            or len(images) > 8
            or not all(isinstance(i, str) and i for i in images)
        ):
            raise UserError(400, "Invalid images: a list of up to 8 URLs")
        return images

    def __init__(self, images=None, **kwargs):
        checked = _images(images)
        if "shippable" in kwargs:  # sent as "true"/"false" (localstripe reads only ``active`` so)
            kwargs["shippable"] = try_convert_to_bool(kwargs["shippable"])
        original(self, **kwargs)
        self.images = checked

    def _update(self, **data):
        if "images" in data:
            data["images"] = _images(data["images"])
        for name in ("active", "shippable"):
            if name in data:
                data[name] = try_convert_to_bool(data[name])
                if not isinstance(data[name], bool):
                    raise UserError(400, f"Invalid {name}")
        plain_update(self, **data)

    plain_update = Product._update
    __init__.paydesk_patched = True
    Product.__init__ = __init__
    Product.images = []
    Product._update = _update


# (API key, Idempotency-Key) -> (path, body, status, answer) of the first request with that key.
_ANSWERED: dict[tuple[str, str], tuple[str, bytes, int, bytes]] = {}


def _replay_idempotent_requests() -> None:
    """Stripe keeps the answer to a POST with an ``Idempotency-Key`` (for 24 hours, per account): the same
    request again gets that answer, replayed (``Idempotent-Replayed: true``), and nothing is done twice; the
    key with other parameters is refused (400 ``idempotency_error``). Kept like Stripe keeps them: successes
    and card declines (402), not requests refused as invalid. localstripe ignores the header, so a retried
    create made a second object. Forgotten when the data is wiped (``DELETE /_config/data``)."""
    from localstripe.server import app as server

    if getattr(Store.clear, "paydesk_patched", False):
        return

    @web.middleware
    async def idempotency(request, handler):
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key or not request.path.startswith("/v1/"):
            return await handler(request)
        body = await request.read()
        slot = (request.headers.get("Authorization", ""), key)
        seen = _ANSWERED.get(slot)
        if seen is not None:
            path, first_body, status, answer = seen
            if path != request.path or first_body != body:
                return web.json_response(
                    {
                        "error": {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests can only be used with the same parameters they "
                            "were first used with.",
                        }
                    },
                    status=400,
                )
            replay = web.Response(body=answer, status=status, content_type="application/json")
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        response = await handler(request)
        if response.status < 400 or response.status == 402:
            _ANSWERED[slot] = (request.path, body, response.status, bytes(response.body or b""))
        return response

    @web.middleware
    async def request_ids(request, handler):
        """Every answer names its request (``Request-Id: req_...``), as Stripe's do: what paydesk audits."""
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        if "Request-Id" not in response.headers:
            response.headers["Request-Id"] = "req_" + uuid.uuid4().hex[:14]
        return response

    server.middlewares.insert(0, idempotency)
    server.middlewares.insert(0, request_ids)
    plain_clear = Store.clear

    def clear(self):
        _ANSWERED.clear()
        plain_clear(self)

    clear.paydesk_patched = True
    Store.clear = clear


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    closer_to_stripe()
    _products_like_stripe()
    import localstripe_connect  # beside this script

    localstripe_connect.install(app)  # Connect, the platform account and webhook endpoints
    # localstripe pickles its whole store to /tmp/localstripe.pickle on every write (the same file for
    # every localstripe on the machine), so each create costs more as the store grows: keep it in memory.
    Store.dump_to_disk = lambda self: None
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
