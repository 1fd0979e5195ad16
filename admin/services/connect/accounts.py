"""Connected accounts: list, create (email, type, country), retrieve (requirements, charges and payouts
enabled), delete (test mode any time; live mode only with a zero balance), and an account's persons."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from admin.errors import ServiceError, check_text, stripe_failure
from admin.listing import Filter, Page, processor_field
from admin.models import PaymentProcessor
from admin.services.connect import common
from admin.services.core import audit
from admin.services.core.idempotency import idempotency_key
from admin.stripe_gateway import GatewayError

TYPES = ("custom", "express", "standard")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}")


@dataclass
class AccountFilter(Filter):
    ppid: int | None = processor_field()
    since: datetime | None = field(default=None, metadata={"label": "Created from"})
    until: datetime | None = field(default=None, metadata={"end": True, "label": "Created to (inclusive)"})

    LABELS: ClassVar[dict[str, str]] = {}


# The CSV of the list (/connect/export.csv) and of an account's persons: every field of the rows.
CSV = (
    "id",
    "name",
    "email",
    "type",
    "country",
    "charges_enabled",
    "payouts_enabled",
    "details_submitted",
    "currently_due",
    "created",
)
PERSON_CSV = ("id", "name", "email", "roles", "title", "verification", "currently_due")


def summary(acct: dict) -> dict[str, Any]:
    """A connected account as lists and the CLI show it."""
    req = acct.get("requirements") or {}
    return {
        "id": acct.get("id"),
        "email": acct.get("email"),
        "type": acct.get("type"),
        "country": acct.get("country"),
        "name": (acct.get("business_profile") or {}).get("name"),
        "charges_enabled": bool(acct.get("charges_enabled")),
        "payouts_enabled": bool(acct.get("payouts_enabled")),
        "details_submitted": bool(acct.get("details_submitted")),
        "currently_due": len(req.get("currently_due") or []),
        "created": acct.get("created"),
    }


def accounts_page(flt: AccountFilter) -> Page[dict]:
    return common.list_page(flt, "accounts", summary, what="connected account list")


@dataclass
class AccountDetail:
    account: dict
    summary: dict
    requirements: dict
    persons: list[dict]
    balance: dict[str, dict[str, int]]  # currency -> {"available": n, "pending": n}
    request_id: str | None


def _balance(bal: dict) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for kind in ("available", "pending"):
        for part in bal.get(kind) or []:
            out.setdefault(part["currency"], {"available": 0, "pending": 0})[kind] += int(
                part.get("amount") or 0
            )
    return out


def get_account(proc: PaymentProcessor, account_id: str) -> AccountDetail:
    account_id = common.check_id(account_id, "account", "account")
    gw = common.gateway(proc)
    try:
        acct = gw.retrieve("accounts", account_id)
        persons = gw.call("accounts.persons", "list", account_id, params={"limit": 100})
        bal = gw.call("balance", "retrieve", stripe_account=account_id)
    except GatewayError as err:
        raise stripe_failure(err, "connected account", account_id, with_request=True) from None
    req = acct.get("requirements") or {}
    requirements: dict[str, Any] = {
        k: list(req.get(k) or [])
        for k in ("currently_due", "past_due", "eventually_due", "pending_verification")
    }
    requirements["disabled_reason"] = req.get("disabled_reason")
    requirements["current_deadline"] = req.get("current_deadline")
    return AccountDetail(
        account=acct,
        summary=summary(acct),
        requirements=requirements,
        persons=[person(p) for p in persons.get("data") or []],
        balance=_balance(bal),
        request_id=acct.request_id,
    )


def person(p: dict) -> dict[str, Any]:
    rel = p.get("relationship") or {}
    roles = [r for r in ("representative", "owner", "director", "executive") if rel.get(r)]
    req = p.get("requirements") or {}
    return {
        "id": p.get("id"),
        "name": " ".join(x for x in (p.get("first_name"), p.get("last_name")) if x) or None,
        "email": p.get("email"),
        "roles": roles,
        "title": rel.get("title"),
        "currently_due": list(req.get("currently_due") or []),
        "verification": (p.get("verification") or {}).get("status"),
    }


def list_persons(proc: PaymentProcessor, account_id: str) -> list[dict]:
    account_id = common.check_id(account_id, "account", "account")
    rows, _ = common.every(proc, "accounts.persons", account_id, what="connected account")
    return [person(p) for p in rows]


@dataclass
class NewAccount:
    email: str | None = None
    type: str = "express"
    country: str = "US"


LABELS = {"email": "Email", "type": "Type", "country": "Country"}


def check_new(new: NewAccount) -> NewAccount:
    email = check_text(new.email, "Email", "email")
    if email and (len(email) > 254 or not EMAIL.fullmatch(email)):
        raise ServiceError(f"{email[:60]!r} is not an email address", field="email")
    kind = (new.type or "").strip().lower()
    if kind not in TYPES:
        raise ServiceError(f"choose one of {', '.join(TYPES)}", field="type")
    country = (new.country or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise ServiceError(
            "give the two-letter country code (ISO 3166-1), such as US, GB or DE", field="country"
        )
    return NewAccount(email=email or None, type=kind, country=country)


def create_account(proc: PaymentProcessor, new: NewAccount, *, action_key: str | None = None) -> dict:
    new = check_new(new)
    params: dict[str, Any] = {"type": new.type, "country": new.country}
    if new.email:
        params["email"] = new.email
    if new.type != "standard":  # Stripe wants the capabilities of accounts the platform controls
        params["capabilities"] = {"card_payments": {"requested": True}, "transfers": {"requested": True}}
    key = idempotency_key("account-create", None, action_key)
    shown = {"email": new.email, "type": new.type, "country": new.country}
    try:
        acct = common.gateway(proc).create("accounts", params, idempotency_key=key)
    except GatewayError as err:
        raise audit.stripe_failed(
            "connect.account_create",
            err,
            processor_id=proc.id,
            object_type="account",
            parameters=shown,
            what="connected account",
            with_request=True,
        ) from None
    audit.record(
        "connect.account_create",
        object_type="account",
        object_id=acct["id"],
        processor_id=proc.id,
        parameters=shown,
        stripe_request_id=acct.request_id,
        commit=True,
    )
    return summary(acct)


def delete_account(proc: PaymentProcessor, account_id: str) -> str | None:
    """Delete a connected account. Test mode: any time. Live mode: Stripe deletes only an account whose
    balances are all zero, so paydesk checks first and says which balance is left; Stripe's own refusal is
    shown as Stripe says it. Returns the request id."""
    account_id = common.check_id(account_id, "account", "account")
    gw = common.gateway(proc)
    if proc.livemode:
        try:
            bal = _balance(gw.call("balance", "retrieve", stripe_account=account_id))
        except GatewayError as err:
            raise stripe_failure(err, "connected account", account_id, with_request=True) from None
        left = {cur: b for cur, b in bal.items() if b["available"] or b["pending"]}
        if left:
            from admin.money import format_money

            shown = ", ".join(
                format_money(b["available"] + b["pending"], cur) for cur, b in sorted(left.items())
            )
            raise ServiceError(
                f"{account_id} still has a balance ({shown}): Stripe deletes a live account only when "
                "all its balances are zero; pay it out or transfer it back first"
            )
    try:
        gone = gw.call("accounts", "delete", account_id)
    except GatewayError as err:
        raise audit.stripe_failed(
            "connect.account_delete",
            err,
            processor_id=proc.id,
            object_type="account",
            object_id=account_id,
            what="connected account",
            with_request=True,
        ) from None
    audit.record(
        "connect.account_delete",
        object_type="account",
        object_id=account_id,
        processor_id=proc.id,
        parameters={"mode": proc.mode},
        stripe_request_id=gone.request_id,
        commit=True,
    )
    return gone.request_id
