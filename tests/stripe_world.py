"""A Stripe account's objects served at the HTTP boundary with ``responses``.

For the parts localstripe cannot do (charge.* and invoice.paid events, current
API shapes, InvoicePayments, refund events, injected 5xx), tests put
fixtures3-shaped objects (``tests/stripe_objects.py``) into a ``StripeWorld``;
the real ``stripe`` SDK inside paydesk's gateway then retrieves and lists them
over HTTP exactly as it would from Stripe. Unknown ids answer Stripe's 404.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import time
from urllib.parse import parse_qs, urlparse

import responses
import stripe_objects as so

BASE = "http://127.0.0.1:9"  # the offline_processor's API base (a closed port)

KIND_OF = {
    "customers": "customer",
    "charges": "charge",
    "invoices": "invoice",
    "payment_intents": "payment_intent",
    "subscriptions": "subscription",
    "balance_transactions": "balance_transaction",
    "refunds": "refund",
    "invoice_payments": "invoice_payment",
    "events": "event",
    "sessions": "checkout.session",
}

_req = itertools.count(1)


class StripeWorld:
    def __init__(self, rsps: responses.RequestsMock):
        self.objects: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []  # (method, path)
        self.updates: list[tuple[str, dict]] = []  # (path, form) of POSTs
        self._failures: list[tuple[str | None, re.Pattern, list[int]]] = []
        self.on_request = None  # called with (method, path) as each request arrives, before it is answered
        rsps.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/v1/.*"), callback=self._get)
        rsps.add_callback(responses.POST, re.compile(re.escape(BASE) + r"/v1/.*"), callback=self._post)

    # -- setting up ------------------------------------------------------------------
    def add(self, *objs: dict) -> None:
        for o in objs:
            self.objects[o["id"]] = o

    def fail(self, path_pattern: str, statuses: list[int], method: str | None = None) -> None:
        """The next requests (of ``method``, or any) whose path matches answer these HTTP statuses, in order."""
        self._failures.append((method, re.compile(path_pattern), list(statuses)))

    def count(self, method: str, path_pattern: str) -> int:
        rx = re.compile(path_pattern)
        return sum(1 for m, p in self.calls if m == method and rx.search(p))

    # -- serving ---------------------------------------------------------------------
    def _reply(self, status: int, body: dict):
        return (
            status,
            {"Request-Id": f"req_world{next(_req):06d}", "Content-Type": "application/json"},
            json.dumps(body),
        )

    def _injected(self, method: str, path: str):
        for only, rx, statuses in self._failures:
            if statuses and (only in (None, method)) and rx.search(path):
                status = statuses.pop(0)
                if status == 404:
                    return self._reply(
                        404,
                        {
                            "error": {
                                "type": "invalid_request_error",
                                "code": "resource_missing",
                                "message": f"No such object: '{path}'",
                            }
                        },
                    )
                return self._reply(status, {"error": {"type": "api_error", "message": f"injected {status}"}})
        return None

    def _get(self, request):
        url = urlparse(request.url)
        self.calls.append(("GET", url.path))
        if self.on_request:
            self.on_request("GET", url.path)
        failed = self._injected("GET", url.path)
        if failed:
            return failed
        parts = url.path.split("/")[2:]  # after /v1/
        if parts and parts[0] == "checkout":
            parts = parts[1:]
        if len(parts) >= 2:
            obj = self.objects.get(parts[1])
            if obj is None:
                return self._reply(
                    404,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "resource_missing",
                            "message": f"No such {KIND_OF.get(parts[0], parts[0])}: '{parts[1]}'",
                            "param": "id",
                        }
                    },
                )
            return self._reply(200, obj)
        return self._reply(200, self._list(parts[0], parse_qs(url.query)))

    def _list(self, resource: str, q: dict[str, list[str]]) -> dict:
        kind = KIND_OF.get(resource)
        items = [o for o in self.objects.values() if o.get("object") == kind]

        def match(o: dict) -> bool:
            for key, values in q.items():
                if (
                    key in ("limit", "starting_after", "ending_before")
                    or key.startswith("expand")
                    or (key == "status" and values[0] == "all")
                ):  # subscriptions: any status
                    continue
                r = re.fullmatch(r"(\w+)\[(gte|gt|lte|lt)\]", key)
                if r:  # a range, e.g. created[gte]=...
                    have, want = int(o.get(r.group(1)) or 0), int(values[0])
                    if not {"gte": have >= want, "gt": have > want, "lte": have <= want, "lt": have < want}[
                        r.group(2)
                    ]:
                        return False
                    continue
                m = re.fullmatch(r"(\w+)\[(\w+)\]", key)
                have = (o.get(m.group(1)) or {}).get(m.group(2)) if m else o.get(key)
                have = have.get("id") if isinstance(have, dict) else have
                if (
                    key == "subscription" and have is None
                ):  # an invoice in the current shape names it in parent
                    have = ((o.get("parent") or {}).get("subscription_details") or {}).get("subscription")
                if have != values[0]:
                    return False
            return True

        data = sorted((o for o in items if match(o)), key=lambda o: -(o.get("created") or 0))
        if q.get("starting_after"):  # Stripe's paging: the page after that object, ``limit`` long
            after = [o["id"] for o in data].index(q["starting_after"][0])
            data = data[after + 1 :]
        limit = int(q["limit"][0]) if q.get("limit") else len(data)
        return {
            "object": "list",
            "data": data[:limit],
            "has_more": len(data) > limit,
            "url": f"/v1/{resource}",
        }

    def _post(self, request):
        url = urlparse(request.url)
        self.calls.append(("POST", url.path))
        if self.on_request:
            self.on_request("POST", url.path)
        form = parse_qs(request.body or "")
        self.updates.append((url.path, {k: v[0] for k, v in form.items()}))
        failed = self._injected("POST", url.path)
        if failed:
            return failed
        parts = url.path.split("/")[2:]
        obj = self.objects.get(parts[1]) if len(parts) >= 2 else None
        if obj is None:
            return self._reply(
                404,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": f"No such object: '{url.path}'",
                    }
                },
            )
        for key, value in self.updates[-1][1].items():
            m = re.fullmatch(r"metadata\[(\w+)\]", key)
            if m:
                obj.setdefault("metadata", {})[m.group(1)] = value
            elif key in ("name", "email", "description"):
                obj[key] = value
        return self._reply(200, obj)


# -- scenarios: consistent sets of objects and the events Stripe sends for them -------


class Renewal:
    """One paid renewal of a monthly subscription and the five events it produces."""

    def __init__(self, world: StripeWorld, *, shape: str = "current", amount: int = 1000, fee: int = 59):
        now = int(time.time())
        self.customer = so.customer()
        self.subscription = so.subscription(customer=self.customer["id"], amount=amount)
        self.intent = so.payment_intent(customer=self.customer["id"], amount=amount)
        self.charge = so.charge(customer=self.customer["id"], payment_intent=self.intent["id"], amount=amount)
        self.intent["latest_charge"] = self.charge["id"]
        self.bt = so.balance_transaction(self.charge, fee=fee)
        self.invoice = so.invoice(
            customer=self.customer["id"],
            subscription=self.subscription["id"],
            amount=amount,
            shape=shape,
            charge=self.charge["id"] if shape == "older" else None,
            payment_intent=self.intent["id"] if shape == "older" else None,
        )
        if shape == "older":
            self.intent["invoice"] = self.invoice["id"]
            self.charge["invoice"] = None  # localstripe and some versions leave it empty
            self.inpay = None
        else:
            self.inpay = so.invoice_payment(
                invoice_id=self.invoice["id"], payment_intent=self.intent["id"], amount=amount
            )
        world.add(
            *(
                o
                for o in (
                    self.customer,
                    self.subscription,
                    self.intent,
                    self.charge,
                    self.bt,
                    self.invoice,
                    self.inpay,
                )
                if o
            )
        )
        open_invoice = copy.deepcopy(self.invoice)
        open_invoice.update(status="open", amount_paid=0, amount_remaining=amount)
        open_invoice["status_transitions"]["paid_at"] = None
        if shape == "older":
            open_invoice["charge"] = None
        self.events = {
            "invoice.finalized": so.event("invoice.finalized", open_invoice, created=now - 5),
            "invoice.paid": so.event("invoice.paid", copy.deepcopy(self.invoice), created=now),
            "invoice.payment_succeeded": so.event(
                "invoice.payment_succeeded", copy.deepcopy(self.invoice), created=now
            ),
            "charge.succeeded": so.event("charge.succeeded", copy.deepcopy(self.charge), created=now - 1),
            "payment_intent.succeeded": so.event(
                "payment_intent.succeeded", copy.deepcopy(self.intent), created=now - 1
            ),
        }


class OneOff:
    """A one-off card payment (no invoice) and its events."""

    def __init__(
        self,
        world: StripeWorld,
        *,
        amount: int = 2500,
        fee: int = 103,
        customer: bool = True,
        captured: bool = True,
    ):
        now = int(time.time())
        self.customer = so.customer() if customer else None
        cid = self.customer["id"] if customer else None
        self.intent = so.payment_intent(
            customer=cid, amount=amount, status="succeeded" if captured else "requires_capture"
        )
        self.charge = so.charge(
            customer=cid, payment_intent=self.intent["id"], amount=amount, captured=captured
        )
        self.intent["latest_charge"] = self.charge["id"]
        self.bt = so.balance_transaction(self.charge, fee=fee)
        world.add(*(o for o in (self.customer, self.intent, self.charge, self.bt) if o))
        self.now = now

    def event(self, type_: str, obj: dict | None = None, created: int | None = None) -> dict:
        default = self.intent if type_.startswith("payment_intent") else self.charge
        return so.event(type_, copy.deepcopy(obj or default), created=created or self.now)

    def refund(self, world: StripeWorld, amount: int, status: str = "succeeded") -> dict:
        r = so.refund(
            charge=self.charge["id"], amount=amount, status=status, payment_intent=self.intent["id"]
        )
        world.add(r)
        counted = [
            o
            for o in world.objects.values()
            if o.get("object") == "refund"
            and o.get("charge") == self.charge["id"]
            and o.get("status") in ("succeeded", "pending")
        ]
        self.charge["amount_refunded"] = sum(o["amount"] for o in counted)
        self.charge["refunded"] = self.charge["amount_refunded"] >= self.charge["amount"]
        self.charge["refunds"] = {
            "object": "list",
            "data": counted,
            "has_more": False,
            "url": f"/v1/charges/{self.charge['id']}/refunds",
        }
        return r
