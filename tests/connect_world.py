"""Stripe Connect and webhook endpoints behind ``responses`` (localstripe has neither), for
``StripeWorld``'s offline processor: the platform's own account (``GET /v1/account``), connected
accounts (create, retrieve, list, delete), their persons, transfers to them, their payouts and
balance transactions (asked with the ``Stripe-Account`` header, as Stripe wants), and webhook
endpoints (list, create with a signing secret, disable, delete). Objects are fixtures3's, changed.
"""

from __future__ import annotations

import copy
import re
import time
from urllib.parse import parse_qs, urlparse

import responses
import stripe_objects as so
from stripe_world import BASE, StripeWorld

CONNECT = {
    "accounts": "account",
    "transfers": "transfer",
    "payouts": "payout",
    "webhook_endpoints": "webhook_endpoint",
    "balance_transactions": "balance_transaction",
}


def _form(body: str) -> dict:
    """A Stripe form body as nested values: ``metadata[k]`` -> dict, ``enabled_events[0]`` -> list."""
    out: dict = {}
    for key, values in parse_qs(body or "", keep_blank_values=True).items():
        m = re.fullmatch(r"(\w+)\[(\w*)\]", key)
        if m and m.group(2).isdigit():
            out.setdefault(m.group(1), []).append(values[0])
        elif m:
            out.setdefault(m.group(1), {})[m.group(2)] = values[0]
        else:
            out[key] = values[0]
    return out


class ConnectWorld(StripeWorld):
    def __init__(self, rsps: responses.RequestsMock):
        super().__init__(rsps)
        rsps.add_callback(responses.DELETE, re.compile(re.escape(BASE) + r"/v1/.*"), callback=self._delete)
        self.platform = so.obj("account", id="acct_platform0001", email="office@example.org")
        self.platform["settings"]["dashboard"]["display_name"] = "Friends of the Earthworm"
        self.owner: dict[str, str] = {}  # object id -> the connected account it lives in
        self.balances: dict[str, dict] = {}  # account id -> its balance
        self.sent: list[dict] = []  # each request's method, path, Stripe-Account and Idempotency-Key
        self.refuse_next: dict[str, tuple[int, dict]] = {}  # "METHOD /path" -> Stripe's error answer, once

    # -- setting up ------------------------------------------------------------------
    def account(self, **changes) -> dict:
        changes.setdefault("created", int(time.time()))
        acct = so.obj("account", id=changes.pop("id", so.new_id("acct")), **changes)
        acct["requirements"]["currently_due"] = ["external_account", "tos_acceptance.date"]
        self.add(acct)
        return acct

    def person(self, account: str, first_name: str = "Grace", last_name: str = "Hopper") -> dict:
        p = so.obj(
            "person",
            id=so.new_id("person"),
            account=account,
            first_name=first_name,
            last_name=last_name,
            email=f"{first_name.lower()}@example.org",
            created=int(time.time()),
        )
        p["relationship"]["representative"] = True
        self.add(p)
        return p

    def payout(self, account: str, *, amount: int = 1500, currency: str = "usd", **changes) -> dict:
        po = so.obj(
            "payout",
            id=so.new_id("po"),
            amount=amount,
            currency=currency,
            created=int(time.time()),
            status=changes.pop("status", "paid"),
            **changes,
        )
        self.add(po)
        self.owner[po["id"]] = account
        return po

    def transaction(
        self,
        account: str,
        payout: str,
        *,
        amount: int,
        fee: int = 0,
        currency: str = "usd",
        type: str = "charge",
    ) -> dict:
        txn = so.obj(
            "balance_transaction",
            id=so.new_id("txn"),
            amount=amount,
            fee=fee,
            net=amount - fee,
            currency=currency,
            type=type,
            reporting_category=type,
            created=int(time.time()),
        )
        txn["payout"] = payout  # what the list is filtered by (Stripe does it server-side)
        self.add(txn)
        self.owner[txn["id"]] = account
        return txn

    def endpoint(self, url: str, events: list[str], **changes) -> dict:
        we = so.obj(
            "webhook_endpoint",
            id=so.new_id("we"),
            url=url,
            enabled_events=events,
            created=int(time.time()),
            **changes,
        )
        self.add(we)
        return we

    def refuse(self, method: str, path: str, status: int, message: str, code: str | None = None) -> None:
        self.refuse_next[f"{method} {path}"] = (
            status,
            {"error": {"type": "invalid_request_error", "message": message, "code": code}},
        )

    # -- serving ---------------------------------------------------------------------
    def _note(self, request, method: str, path: str):
        self.sent.append(
            {
                "method": method,
                "path": path,
                "account": request.headers.get("Stripe-Account"),
                "key": request.headers.get("Idempotency-Key"),
            }
        )
        refused = self.refuse_next.pop(f"{method} {path}", None)
        return self._reply(*refused) if refused else self._injected(method, path)

    def _missing(self, kind: str, obj_id: str):
        return self._reply(
            404,
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "message": f"No such {kind}: '{obj_id}'",
                    "param": "id",
                }
            },
        )

    def _scoped_list(self, resource: str, q: dict, account: str | None, **match) -> dict:
        kind = CONNECT[resource]
        items = [
            o
            for o in self.objects.values()
            if o.get("object") == kind
            and self.owner.get(o["id"]) == account
            and o is not self.platform
            and all(o.get(k) == v for k, v in match.items() if v is not None)
        ]
        ops = {"gte": int.__ge__, "gt": int.__gt__, "lte": int.__le__, "lt": int.__lt__}
        for op, test in ops.items():  # created[gte]=... and the like
            if q.get(f"created[{op}]"):
                bound = int(q[f"created[{op}]"][0])
                items = [o for o in items if test(int(o.get("created") or 0), bound)]
        items.sort(key=lambda o: -(o.get("created") or 0))
        if q.get("starting_after"):
            ids = [o["id"] for o in items]
            items = items[ids.index(q["starting_after"][0]) + 1 :] if q["starting_after"][0] in ids else []
        limit = int(q["limit"][0]) if q.get("limit") else 10
        return {
            "object": "list",
            "data": items[:limit],
            "has_more": len(items) > limit,
            "url": f"/v1/{resource}",
        }

    def _get(self, request):
        url = urlparse(request.url)
        parts = url.path.split("/")[2:]
        if not parts or (parts[0] not in CONNECT and parts[0] not in ("account", "balance")):
            return super()._get(request)
        if parts[0] == "balance_transactions" and "payout" not in parse_qs(url.query):
            return super()._get(request)
        self.calls.append(("GET", url.path))
        refused = self._note(request, "GET", url.path)
        if refused:
            return refused
        q = parse_qs(url.query)
        account = request.headers.get("Stripe-Account")
        if parts[0] == "account":
            return self._reply(200, self.platform)
        if parts[0] == "balance":
            return self._reply(200, self.balances.get(account) or so.obj("balance"))
        if len(parts) == 1:
            first = lambda k: q[k][0] if q.get(k) else None  # noqa: E731
            match = {
                "destination": first("destination"),
                "transfer_group": first("transfer_group"),
                "payout": first("payout"),
                "status": first("status"),
            }
            return self._reply(200, self._scoped_list(parts[0], q, account, **match))
        obj = self.objects.get(parts[1])
        if obj is None or obj.get("object") != CONNECT[parts[0]] or self.owner.get(parts[1]) != account:
            return self._missing(CONNECT[parts[0]], parts[1])
        if len(parts) == 3 and parts[2] == "persons":
            persons = [
                o for o in self.objects.values() if o.get("object") == "person" and o["account"] == parts[1]
            ]
            return self._reply(
                200,
                {
                    "object": "list",
                    "data": persons,
                    "has_more": False,
                    "url": f"/v1/accounts/{parts[1]}/persons",
                },
            )
        return self._reply(200, obj)

    def _post(self, request):
        url = urlparse(request.url)
        parts = url.path.split("/")[2:]
        if not parts or parts[0] not in CONNECT:
            return super()._post(request)
        self.calls.append(("POST", url.path))
        form = _form(request.body if isinstance(request.body, str) else (request.body or b"").decode())
        self.updates.append((url.path, form))
        refused = self._note(request, "POST", url.path)
        if refused:
            return refused
        if len(parts) == 2:  # an update
            obj = self.objects.get(parts[1])
            if obj is None:
                return self._missing(CONNECT[parts[0]], parts[1])
            if "disabled" in form:
                obj["status"] = "disabled" if form["disabled"] == "true" else "enabled"
            for key in ("enabled_events", "description", "url"):
                if key in form:
                    obj[key] = form[key]
            return self._reply(200, obj)
        now = int(time.time())
        if parts[0] == "accounts":
            obj = self.account(
                type=form.get("type", "custom"),
                country=form.get("country", "US"),
                email=form.get("email"),
                controller=None,
                livemode=False,
            )
        elif parts[0] == "transfers":
            dest = form.get("destination")
            if dest not in self.objects:
                return self._reply(
                    400,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "param": "destination",
                            "message": f"No such destination: '{dest}'",
                        }
                    },
                )
            obj = so.obj(
                "transfer",
                id=so.new_id("tr"),
                amount=int(form["amount"]),
                currency=form["currency"],
                destination=dest,
                transfer_group=form.get("transfer_group"),
                metadata=form.get("metadata", {}),
                description=form.get("description"),
                created=now,
            )
        elif parts[0] == "webhook_endpoints":
            obj = so.obj(
                "webhook_endpoint",
                id=so.new_id("we"),
                url=form["url"],
                created=now,
                enabled_events=form.get("enabled_events", []),
                description=form.get("description"),
                secret="whsec_" + so.new_id("sig"),
            )
        else:
            return self._reply(
                400, {"error": {"type": "invalid_request_error", "message": "not served here"}}
            )
        self.add(obj)
        served = copy.deepcopy(obj)
        obj.pop("secret", None)  # Stripe shows an endpoint's secret only in the answer to its creation
        return self._reply(200, served)

    def _delete(self, request):
        url = urlparse(request.url)
        parts = url.path.split("/")[2:]
        self.calls.append(("DELETE", url.path))
        refused = self._note(request, "DELETE", url.path)
        if refused:
            return refused
        kind = CONNECT.get(parts[0], parts[0])
        if len(parts) != 2 or self.objects.get(parts[1], {}).get("object") != kind:
            return self._missing(kind, parts[1] if len(parts) > 1 else "")
        del self.objects[parts[1]]
        return self._reply(200, {"id": parts[1], "object": kind, "deleted": True})
