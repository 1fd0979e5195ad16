"""What localstripe (1.15) lacks and paydesk's Connect and settings pages ask of Stripe, taught to it minimally
(``install(app)``, from ``localstripe_server.py``), in Stripe's shapes:

- ``GET /v1/account``: the platform account ("test connection");
- connected accounts: ``POST/GET /v1/accounts``, ``GET/DELETE /v1/accounts/{id}``, and their persons
  (``GET/POST /v1/accounts/{id}/persons``);
- transfers to them (``POST/GET /v1/transfers``): money arrives in the account's balance as a ``payment``;
- with a ``Stripe-Account`` header: the account's balance (``GET /v1/balance``), payouts (``POST/GET
  /v1/payouts``, ``GET /v1/payouts/{id}``; a payout pays out the available balance of its currency, is
  ``paid`` at once, and includes every transaction not yet paid out) and ``GET /v1/balance_transactions
  ?payout=po_...``;
- webhook endpoints (``GET/POST /v1/webhook_endpoints``, ``POST/DELETE /v1/webhook_endpoints/{id}``; the
  signing secret is in the answer to the creation only).

Everything is in memory, in one middleware after localstripe's own authentication; other requests pass on.
"""

from __future__ import annotations

import re
import secrets
import time

from aiohttp import web
from localstripe.errors import UserError
from localstripe.server import get_post_data, json_response, unflatten_data

_STORE: dict[str, dict[str, dict]] = {}
_KINDS = ("account", "person", "transfer", "payout", "balance_transaction", "webhook_endpoint")
PLATFORM = {
    "id": "acct_localstripe0platform",
    "object": "account",
    "email": None,
    "type": "standard",
    "country": "US",
    "default_currency": "usd",
    "charges_enabled": True,
    "payouts_enabled": True,
    "details_submitted": True,
    "business_profile": {"name": "localstripe"},
    "settings": {"dashboard": {"display_name": "localstripe (paydesk demo)"}},
    "livemode": False,
}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _store(kind: str) -> dict[str, dict]:
    return _STORE.setdefault(kind, {})


def _missing(kind: str, obj_id: str):
    return UserError(404, f"No such {kind}: '{obj_id}'", {"code": "resource_missing", "param": "id"})


def _list(items: list[dict], url: str, q: dict) -> dict:
    items = sorted(items, key=lambda o: (o.get("created") or 0, o["id"]), reverse=True)
    created = q.get("created") if isinstance(q.get("created"), dict) else {}
    tests = {"gte": int.__ge__, "gt": int.__gt__, "lte": int.__le__, "lt": int.__lt__}
    for op, bound in created.items():
        if op not in tests or not str(bound).isdigit():
            raise UserError(400, "Bad created filter")
        items = [o for o in items if tests[op](int(o.get("created") or 0), int(bound))]
    ids = [o["id"] for o in items]
    if q.get("starting_after") in ids:
        items = items[ids.index(q["starting_after"]) + 1 :]
    elif q.get("ending_before") in ids:
        items = items[: ids.index(q["ending_before"])]
    limit = int(q.get("limit") or 10)
    if q.get("ending_before"):
        page, more = items[-limit:], len(items) > limit
    else:
        page, more = items[:limit], len(items) > limit
    return {"object": "list", "data": page, "has_more": more, "url": url}


def _account(data: dict) -> dict:
    kind = data.get("type") or "custom"
    if kind not in ("custom", "express", "standard"):
        raise UserError(400, "Invalid type: must be one of custom, express, standard", {"param": "type"})
    country = (data.get("country") or "US").upper()
    acct = {
        "id": _new_id("acct"),
        "object": "account",
        "type": kind,
        "country": country,
        "email": data.get("email"),
        "default_currency": "usd",
        "created": int(time.time()),
        "charges_enabled": False,
        "payouts_enabled": False,
        "details_submitted": False,
        "business_profile": {"name": None},
        "capabilities": {k: "inactive" for k, v in (data.get("capabilities") or {}).items()},
        "requirements": {
            "currently_due": [
                "business_type",
                "external_account",
                "tos_acceptance.date",
                "tos_acceptance.ip",
            ],
            "eventually_due": [],
            "past_due": [],
            "pending_verification": [],
            "disabled_reason": "requirements.past_due",
            "current_deadline": None,
        },
        "settings": {"dashboard": {"display_name": None}},
        "metadata": {},
        "livemode": False,
    }
    _store("account")[acct["id"]] = acct
    return acct


def _balance_of(account: str) -> dict:
    txns = [t for t in _store("balance_transaction").values() if t["_account"] == account]
    per: dict[str, int] = {}
    for t in txns:
        per[t["currency"]] = per.get(t["currency"], 0) + t["net"]
    available = [{"amount": v, "currency": c, "source_types": {"card": v}} for c, v in sorted(per.items())]
    return {
        "object": "balance",
        "available": available or [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
        "pending": [{"amount": 0, "currency": c["currency"], "source_types": {"card": 0}} for c in available]
        or [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
        "livemode": False,
    }


def _txn(
    account: str,
    *,
    amount: int,
    currency: str,
    type: str,
    source: str,
    description: str | None = None,
    payout: str | None = None,
) -> dict:
    t = {
        "id": _new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "fee": 0,
        "net": amount,
        "currency": currency,
        "type": type,
        "reporting_category": type,
        "source": source,
        "status": "available",
        "description": description,
        "created": int(time.time()),
        "available_on": int(time.time()),
        "fee_details": [],
        "_account": account,
        "_payout": payout,
    }
    _store("balance_transaction")[t["id"]] = t
    return t


def _public(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _transfer(data: dict) -> dict:
    dest = data.get("destination")
    if dest not in _store("account"):
        raise UserError(400, f"No such destination: '{dest}'", {"param": "destination"})
    try:
        amount = int(data.get("amount"))
    except (TypeError, ValueError):
        raise UserError(400, "Invalid integer: amount", {"param": "amount"}) from None
    if amount <= 0:
        raise UserError(400, "Amount must be at least 1", {"param": "amount"})
    currency = (data.get("currency") or "").lower()
    tr = {
        "id": _new_id("tr"),
        "object": "transfer",
        "amount": amount,
        "amount_reversed": 0,
        "currency": currency,
        "destination": dest,
        "destination_payment": _new_id("py"),
        "transfer_group": data.get("transfer_group"),
        "description": data.get("description"),
        "metadata": data.get("metadata") or {},
        "created": int(time.time()),
        "reversed": False,
        "livemode": False,
        "balance_transaction": _new_id("txn"),
        "source_type": "card",
    }
    _store("transfer")[tr["id"]] = tr
    _txn(
        dest,
        amount=amount,
        currency=currency,
        type="payment",
        source=tr["destination_payment"],
        description=tr["description"],
    )
    return tr


def _payout(account: str, data: dict) -> dict:
    currency = (data.get("currency") or "usd").lower()
    unpaid = [
        t
        for t in _store("balance_transaction").values()
        if t["_account"] == account and t["_payout"] is None and t["currency"] == currency
    ]
    available = sum(t["net"] for t in unpaid)
    amount = int(data.get("amount") or available)
    if amount <= 0 or amount > available:
        raise UserError(
            400,
            "You have insufficient funds in your Stripe account for this payout.",
            {"code": "balance_insufficient"},
        )
    po = {
        "id": _new_id("po"),
        "object": "payout",
        "amount": amount,
        "currency": currency,
        "status": "paid",
        "arrival_date": int(time.time()),
        "automatic": False,
        "method": "standard",
        "type": "bank_account",
        "description": data.get("description") or "STRIPE PAYOUT",
        "failure_message": None,
        "created": int(time.time()),
        "livemode": False,
        "metadata": {},
        "_account": account,
    }
    _store("payout")[po["id"]] = po
    for t in unpaid:
        t["_payout"] = po["id"]
    _txn(account, amount=-amount, currency=currency, type="payout", source=po["id"], payout=po["id"])
    return po


def _endpoint(data: dict) -> dict:
    events = data.get("enabled_events") or []
    if isinstance(events, dict):  # enabled_events[0]=... as a form decodes it
        events = [events[k] for k in sorted(events, key=int)]
    if not data.get("url") or not events:
        raise UserError(400, "Missing required param: url and enabled_events")
    we = {
        "id": _new_id("we"),
        "object": "webhook_endpoint",
        "url": data["url"],
        "enabled_events": events,
        "description": data.get("description"),
        "status": "enabled",
        "created": int(time.time()),
        "metadata": data.get("metadata") or {},
        "api_version": None,
        "application": None,
        "livemode": False,
    }
    _store("webhook_endpoint")[we["id"]] = we
    return {**we, "secret": "whsec_" + secrets.token_hex(16)}


def _route(method: str, path: str, account: str | None, data: dict):  # noqa: C901 - one table of routes
    parts = path.strip("/").split("/")[1:]  # after v1
    if not parts:
        return None
    head, rest = parts[0], parts[1:]
    if head == "account" and not rest and method == "GET":
        return PLATFORM
    if account:  # the connected account's own objects
        if account not in _store("account"):
            raise UserError(
                403,
                f"The provided key does not have access to account '{account}' (or that "
                "account does not exist).",
            )
        if head == "balance" and method == "GET":
            return _balance_of(account)
        if head == "payouts":
            if not rest and method == "POST":
                return _public(_payout(account, data))
            if not rest and method == "GET":
                mine = [
                    _public(p)
                    for p in _store("payout").values()
                    if p["_account"] == account and (not data.get("status") or p["status"] == data["status"])
                ]
                return _list(mine, "/v1/payouts", data)
            if len(rest) == 1 and method == "GET":
                po = _store("payout").get(rest[0])
                if po is None or po["_account"] != account:
                    raise _missing("payout", rest[0])
                return _public(po)
        if head == "balance_transactions" and not rest and method == "GET":
            mine = [
                _public(t)
                for t in _store("balance_transaction").values()
                if t["_account"] == account and (not data.get("payout") or t["_payout"] == data["payout"])
            ]
            return _list(mine, "/v1/balance_transactions", data)
        return None
    if head == "accounts":
        if not rest:
            if method == "POST":
                return _account(data)
            if method == "GET":
                return _list(list(_store("account").values()), "/v1/accounts", data)
        acct = _store("account").get(rest[0])
        if acct is None:
            raise _missing("account", rest[0])
        if len(rest) == 1 and method == "GET":
            return acct
        if len(rest) == 1 and method == "DELETE":
            del _store("account")[rest[0]]
            return {"id": rest[0], "object": "account", "deleted": True}
        if len(rest) == 2 and rest[1] == "persons":
            if method == "POST":
                p = {
                    "id": _new_id("person"),
                    "object": "person",
                    "account": acct["id"],
                    "first_name": data.get("first_name"),
                    "last_name": data.get("last_name"),
                    "email": data.get("email"),
                    "relationship": {
                        "representative": str((data.get("relationship") or {}).get("representative"))
                        == "true",
                        "owner": False,
                        "director": False,
                        "executive": False,
                        "title": None,
                    },
                    "requirements": {"currently_due": ["dob.day", "ssn_last_4"]},
                    "verification": {"status": "unverified"},
                    "created": int(time.time()),
                }
                _store("person")[p["id"]] = p
                return p
            mine = [p for p in _store("person").values() if p["account"] == acct["id"]]
            return _list(mine, f"/v1/accounts/{acct['id']}/persons", data)
        return None
    if head == "transfers":
        if not rest and method == "POST":
            return _transfer(data)
        if not rest and method == "GET":
            mine = [
                t
                for t in _store("transfer").values()
                if all(not data.get(k) or t.get(k) == data[k] for k in ("destination", "transfer_group"))
            ]
            return _list(mine, "/v1/transfers", data)
        if len(rest) == 1 and method == "GET":
            return _store("transfer").get(rest[0]) or _raise(_missing("transfer", rest[0]))
        return None
    if head == "webhook_endpoints":
        if not rest and method == "POST":
            return _endpoint(data)
        if not rest and method == "GET":
            return _list(list(_store("webhook_endpoint").values()), "/v1/webhook_endpoints", data)
        we = _store("webhook_endpoint").get(rest[0])
        if we is None:
            raise _missing("webhook_endpoint", rest[0])
        if method == "DELETE":
            del _store("webhook_endpoint")[rest[0]]
            return {"id": rest[0], "object": "webhook_endpoint", "deleted": True}
        if method == "POST":
            if "disabled" in data:
                we["status"] = "disabled" if str(data["disabled"]).lower() == "true" else "enabled"
            return we
        return we
    return None


def _raise(err: Exception):
    raise err


CONNECT_PATH = re.compile(r"^/v1/(account|accounts|transfers|webhook_endpoints)(/|$)")
ACCOUNT_PATH = re.compile(r"^/v1/(balance|payouts|balance_transactions)(/|$)")


@web.middleware
async def connect_middleware(request, handler):
    account = request.headers.get("Stripe-Account")
    if not (CONNECT_PATH.match(request.path) or (account and ACCOUNT_PATH.match(request.path))):
        return await handler(request)
    data = (
        (await get_post_data(request) or {})
        if request.method == "POST"
        else (unflatten_data(request.query) or {})
    )
    answer = _route(request.method, request.path, account, data)
    if answer is None:
        raise UserError(404, f"Unrecognized request URL ({request.method}: {request.path})")
    return json_response(answer)


def install(app) -> None:
    """Add the middleware (before the app starts: its middleware list is frozen then); wiping localstripe's
    data (``DELETE /_config/data``) wipes these objects too."""
    from localstripe.resources import Store

    if connect_middleware in app.middlewares:
        return
    app.middlewares.append(connect_middleware)
    plain_clear = Store.clear

    def wipe(self):
        clear()
        plain_clear(self)

    Store.clear = wipe


def clear() -> None:
    _STORE.clear()
