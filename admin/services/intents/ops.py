"""What staff do to payment intents: cancel (cancellation_reason ``abandoned``), capture in full or in
part, refresh from Stripe, learn of intents from Stripe's list, delete old final records.

Each action writes its audit entry (with the Stripe request id) in the transaction that records its
outcome. Stripe answering that an intent is already cancelled, already succeeded or gone (404) is an
outcome like any other, recorded and reported as such, not a failure.

Idempotency: every cancel and capture carries a key made from the intent and the staff action
(``action_key``, ``services/core/idempotency``): the same form submitted twice, or a job's unit run again
after a crash, sends the same key, so Stripe does the thing once; a new action (a new page, another job)
gets a new key.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from admin.dbutil import immediate, rowcount
from admin.errors import ServiceError, stripe_failure
from admin.extensions import db
from admin.models import PaymentProcessor, StripePaymentIntent
from admin.money import format_money, parse_money
from admin.services.core import audit
from admin.services.core.idempotency import idempotency_key
from admin.services.core.stripe_reader import StripeReader
from admin.services.intents.queries import FINAL, GONE, by_intent_id, sync_intent
from admin.services.records import contributions
from admin.stripe_gateway import Gateway, GatewayError
from admin.timeutil import to_unix

# Outcomes; all but FAILED are reported as done (the intent is in the state asked for, or cannot be).
CANCELLED, CAPTURED, REFRESHED = "cancelled", "captured", "refreshed"
ALREADY_CANCELLED, ALREADY_SUCCEEDED, GONE_OUTCOME, FAILED = (
    "already_cancelled",
    "already_succeeded",
    "gone",
    "failed",
)
CANCELLATION_REASON = "abandoned"


@dataclass
class IntentOutcome:
    intent_id: str
    outcome: str
    message: str
    request_id: str | None = None
    row: StripePaymentIntent | None = None
    transient: bool = False  # a failure that may pass (network, Stripe 5xx): worth trying again
    amount: int | None = None  # a capture: what was captured (minor units), or what the donor paid already
    currency: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome != FAILED


def check_intent_id(intent_id: str) -> str:
    intent_id = (intent_id or "").strip()
    if not re.fullmatch(r"pi_[A-Za-z0-9_]{1,250}", intent_id):
        raise ServiceError(f"{intent_id!r} is not a payment intent id (they start with pi_)")
    return intent_id


def _now_stamp() -> int:
    return int(time.time())


def _record(
    verb: str,
    processor: PaymentProcessor,
    intent_id: str,
    pi: dict | None,
    res: IntentOutcome,
    parameters: dict,
) -> IntentOutcome:
    """Sync the local record with what Stripe answered, and write the audit entry; one transaction."""
    immediate()
    row = by_intent_id(intent_id)
    if pi is not None:
        row = sync_intent(processor, pi, stamp=_now_stamp(), row=row)
        if pi.get("status") == "canceled":
            extra = json.loads(row.extra_data) if row.extra_data else {}
            extra["cancellation_reason"] = pi.get("cancellation_reason")
            row.extra_data = json.dumps(extra)
            c = contributions.by_intent(processor.id, intent_id)
            if c is not None:
                contributions.cancel(
                    c, f"payment intent cancelled ({pi.get('cancellation_reason') or 'no reason given'})"
                )
    elif res.outcome == GONE_OUTCOME and row is not None and row.processor_id == processor.id:
        row.flags = GONE  # only Stripe's 404 on the intent's own account says so (not a wrong ``ppid``)
    audit.record(
        f"intent.{verb}",
        object_type="intent",
        object_id=intent_id,
        processor_id=processor.id,
        parameters={**parameters, "outcome": res.outcome},
        ok=res.ok,
        message=res.message,
        stripe_request_id=res.request_id,
        commit=False,
    )
    db.session.commit()
    res.row = row
    return res


def _current(gw: Gateway, intent_id: str) -> tuple[dict | None, str | None]:
    """The intent as Stripe has it now; (None, request id) when Stripe has no such intent."""
    try:
        res = gw.retrieve("payment_intents", intent_id)
    except GatewayError as err:
        if err.not_found:
            return None, err.request_id
        raise
    return dict(res), res.request_id


def _gone(intent_id: str, request_id: str | None) -> IntentOutcome:
    return IntentOutcome(
        intent_id,
        GONE_OUTCOME,
        f"Stripe has no payment intent {intent_id} any more (404); paydesk marks its record as gone.",
        request_id,
    )


def _already(intent_id: str, pi: dict, request_id: str | None) -> IntentOutcome | None:
    if pi.get("status") == "canceled":
        reason = pi.get("cancellation_reason")
        return IntentOutcome(
            intent_id,
            ALREADY_CANCELLED,
            f"{intent_id} was already cancelled in Stripe"
            + (f" ({reason})" if reason else "")
            + "; nothing to do.",
            request_id,
        )
    if pi.get("status") == "succeeded":
        return IntentOutcome(
            intent_id,
            ALREADY_SUCCEEDED,
            f"{intent_id} has already succeeded in Stripe "
            f"(the donor paid {format_money(pi.get('amount_received') or pi.get('amount'), pi.get('currency'))}); "
            f"nothing to cancel or capture.",
            request_id,
        )
    return None


def _failed(intent_id: str, verb: str, err: GatewayError) -> IntentOutcome:
    return IntentOutcome(
        intent_id,
        FAILED,
        f"Could not {verb} {intent_id}: {err.message}. Nothing was changed.",
        err.request_id,
        transient=err.transient,
    )


def _refused(gw: Gateway, intent_id: str, verb: str, err: GatewayError) -> tuple[IntentOutcome, dict | None]:
    """Stripe refused to cancel or capture. A 404 means the intent is gone; a 400 usually means it has
    moved on (cancelled or succeeded meanwhile), so see what it is now before calling it a failure."""
    if err.not_found:
        return _gone(intent_id, err.request_id), None
    if err.http_status != 400:
        return _failed(intent_id, verb, err), None
    try:
        pi, _ = _current(gw, intent_id)
    except GatewayError:
        return _failed(intent_id, verb, err), None
    if pi is None:
        return _gone(intent_id, err.request_id), None
    done = _already(intent_id, pi, err.request_id)
    return (done or _failed(intent_id, verb, err)), pi


def cancel_intent(
    processor: PaymentProcessor,
    intent_id: str,
    *,
    action_key: str | None = None,
    reason: str = CANCELLATION_REASON,
    job_id: int | None = None,
) -> IntentOutcome:
    """Cancel an intent in Stripe (releasing any authorisation on the donor's card), then record it.
    Commits, with its audit entry. Never raises for what Stripe answers: see ``outcome``."""
    intent_id = check_intent_id(intent_id)
    key = idempotency_key("cancel", intent_id, action_key)
    gw = Gateway.for_processor(processor)
    pi = None
    try:
        res = gw.call(
            "payment_intents",
            "cancel",
            intent_id,
            params={"cancellation_reason": reason},
            idempotency_key=key,
        )
        pi = dict(res)
        out = IntentOutcome(intent_id, CANCELLED, f"Cancelled {intent_id} ({reason}).", res.request_id)
    except GatewayError as err:
        out, pi = _refused(gw, intent_id, "cancel", err)
    params = {"reason": reason, "idempotency_key": key, **({"job": job_id} if job_id else {})}
    return _record("cancel", processor, intent_id, pi, out, params)


def capture_intent(
    processor: PaymentProcessor,
    intent_id: str,
    *,
    amount: int | str | None = None,
    action_key: str | None = None,
) -> IntentOutcome:
    """Capture an uncaptured (``requires_capture``) intent, in full or in part.

    ``amount``: minor units, or text in major units ("12.50"), or None for everything authorised. It is
    checked against what Stripe says is authorised (``amount_capturable``) before anything is captured;
    a bad amount raises ``ServiceError`` (field ``amount``) and nothing is sent to Stripe."""
    intent_id = check_intent_id(intent_id)
    gw = Gateway.for_processor(processor)
    try:
        pi, request_id = _current(gw, intent_id)
    except GatewayError as err:
        return _record("capture", processor, intent_id, None, _failed(intent_id, "capture", err), {})
    if pi is None:
        return _record("capture", processor, intent_id, None, _gone(intent_id, request_id), {})
    currency = (pi.get("currency") or "").lower()
    done = _already(intent_id, pi, request_id)
    if done is not None:
        done.amount, done.currency = pi.get("amount_received") or pi.get("amount"), currency
        return _record("capture", processor, intent_id, pi, done, {})
    if pi.get("status") != "requires_capture":
        raise ServiceError(
            f"Only an intent waiting for capture can be captured; Stripe says {intent_id} is "
            f"{pi.get('status')}.",
            field="id",
        )
    authorised = int(pi.get("amount_capturable") or pi.get("amount") or 0)
    wanted = _capture_amount(amount, currency, authorised)
    key = idempotency_key("capture", intent_id, action_key, wanted)
    params = {} if wanted == authorised else {"amount_to_capture": wanted}
    captured: dict | None
    try:
        res = gw.call("payment_intents", "capture", intent_id, params=params, idempotency_key=key)
        captured = dict(res)
        rest = authorised - wanted
        out = IntentOutcome(
            intent_id,
            CAPTURED,
            f"Captured {format_money(wanted, currency)} of "
            f"{format_money(authorised, currency)}"
            + (f"; the other {format_money(rest, currency)} is released to the donor." if rest else ".")
            + " The payment is recorded when Stripe's webhook arrives.",
            res.request_id,
            amount=wanted,
            currency=currency,
        )
    except GatewayError as err:
        out, captured = _refused(gw, intent_id, "capture", err)
    return _record(
        "capture",
        processor,
        intent_id,
        captured,
        out,
        {"amount": wanted, "currency": currency, "authorised": authorised, "idempotency_key": key},
    )


def check_charge_id(charge_id: str) -> str:
    charge_id = (charge_id or "").strip()
    if not re.fullmatch(r"ch_[A-Za-z0-9_]{1,250}", charge_id):
        raise ServiceError(f"{charge_id!r} is not a charge id (they start with ch_)", field="id")
    return charge_id


def capture(
    processor: PaymentProcessor,
    object_id: str,
    *,
    amount: int | str | None = None,
    action_key: str | None = None,
) -> IntentOutcome:
    """Capture by PaymentIntent (``pi_``) or by charge id (``ch_``, the seed's ``gateway_id``)."""
    if (object_id or "").strip().startswith("ch_"):
        return capture_charge(processor, object_id, amount=amount, action_key=action_key)
    return capture_intent(processor, object_id, amount=amount, action_key=action_key)


def capture_charge(
    processor: PaymentProcessor,
    charge_id: str,
    *,
    amount: int | str | None = None,
    action_key: str | None = None,
) -> IntentOutcome:
    """Capture an authorised charge by its id: through its PaymentIntent when it has one (``capture_intent``),
    else the charge itself (a charge made without an intent). The amount is checked against what is
    authorised before anything is captured. Commits, with its audit entry."""
    from admin.services.core.stripe_reader import write_after_reading
    from admin.services.records.charges import record_charge

    charge_id = check_charge_id(charge_id)
    gw = Gateway.for_processor(processor)
    try:
        ch = gw.retrieve("charges", charge_id)
    except GatewayError as err:
        if err.not_found:
            gone = ServiceError(f"Stripe has no charge {charge_id} on this account", field="id")
            gone.not_found = True
            raise gone from None
        raise stripe_failure(err, with_request=True, doing=f"refused to read {charge_id}") from None
    pi_id = ch.get("payment_intent")
    pi_id = pi_id.get("id") if isinstance(pi_id, dict) else pi_id
    if pi_id:
        return capture_intent(processor, pi_id, amount=amount, action_key=action_key)
    currency = (ch.get("currency") or "").lower()
    if ch.get("captured") or ch.get("status") != "succeeded":
        raise ServiceError(
            f"Only an authorised charge can be captured; Stripe says {charge_id} is "
            f"{'captured already' if ch.get('captured') else ch.get('status')}.",
            field="id",
        )
    authorised = int(ch.get("amount") or 0) - int(ch.get("amount_refunded") or 0)
    wanted = _capture_amount(amount, currency, authorised)
    key = idempotency_key("capture", charge_id, action_key, wanted)
    params = {} if wanted == authorised else {"amount": wanted}
    audit_params = {
        "charge": charge_id,
        "amount": wanted,
        "currency": currency,
        "authorised": authorised,
        "idempotency_key": key,
    }
    try:
        res = gw.call("charges", "capture", charge_id, params=params, idempotency_key=key)
    except GatewayError as err:
        out = IntentOutcome(
            charge_id,
            FAILED,
            f"Could not capture {charge_id}: {err.message}. Nothing was changed.",
            err.request_id,
            transient=err.transient,
        )
        immediate()
        audit.record(
            "charge.capture",
            object_type="charge",
            object_id=charge_id,
            processor_id=processor.id,
            parameters=audit_params,
            ok=False,
            message=out.message,
            stripe_request_id=err.request_id,
            commit=True,
        )
        return out
    reader = StripeReader(processor)
    captured = reader.expanded("charges", charge_id, required=("balance_transaction", "amount_refunded"))
    out = IntentOutcome(
        charge_id,
        CAPTURED,
        f"Captured {format_money(wanted, currency)} of {format_money(authorised, currency)} ({charge_id}).",
        res.request_id,
        amount=wanted,
        currency=currency,
    )
    assert captured is not None  # required: the reader raised if Stripe had no such charge
    write_after_reading(reader, lambda: record_charge(reader, processor, captured))
    audit.record(
        "charge.capture",
        object_type="charge",
        object_id=charge_id,
        processor_id=processor.id,
        parameters=audit_params,
        message=out.message,
        stripe_request_id=res.request_id,
        commit=False,
    )
    db.session.commit()
    return out


def _capture_amount(amount: int | str | None, currency: str, authorised: int) -> int:
    if amount is None or (isinstance(amount, str) and not amount.strip()):
        return authorised
    if isinstance(amount, str):
        try:
            amount = parse_money(amount, currency)
        except ValueError as err:
            raise ServiceError(str(err), field="amount") from None
    if amount <= 0:
        raise ServiceError(
            "Capture more than nothing: give a positive amount, or leave it empty for the full amount.",
            field="amount",
        )
    if amount > authorised:
        raise ServiceError(
            f"{format_money(amount, currency)} is more than the {format_money(authorised, currency)} "
            f"authorised on the donor's card; capture at most that.",
            field="amount",
        )
    return amount


def refresh_intent(processor: PaymentProcessor, intent_id: str) -> IntentOutcome:
    """Fetch the intent from Stripe and bring paydesk's record in line (creating it when paydesk did not
    know the intent). Commits, with its audit entry."""
    intent_id = check_intent_id(intent_id)
    try:
        pi, request_id = _current(Gateway.for_processor(processor), intent_id)
    except GatewayError as err:
        return _record("refresh", processor, intent_id, None, _failed(intent_id, "refresh", err), {})
    if pi is None:
        return _record("refresh", processor, intent_id, None, _gone(intent_id, request_id), {})
    out = IntentOutcome(intent_id, REFRESHED, f"Refreshed from Stripe: {pi.get('status')}.", request_id)
    return _record("refresh", processor, intent_id, pi, out, {})


# -- learning of intents from Stripe's list ------------------------------------------------


def stripe_intents(
    processor: PaymentProcessor, *, since: datetime | None = None, starting_after: str | None = None
) -> Iterator[dict]:
    """Every intent Stripe lists for the account (created since ``since``), newest first, from after
    ``starting_after``."""
    created = {"gte": to_unix(since)} if since else None
    for page in StripeReader(processor).pages(
        "payment_intents", starting_after=starting_after, created=created
    ):
        yield from page


def learn_intent(processor: PaymentProcessor, pi: dict) -> str:
    """Track an intent from Stripe's list: "new", "updated" or "unchanged". Commits."""
    immediate()
    row = by_intent_id(pi["id"])
    before = (row.status, row.amount, row.last_error) if row is not None else None
    row = sync_intent(processor, pi, stamp=_now_stamp(), row=row)
    db.session.commit()
    if before is None:
        return "new"
    return "unchanged" if before == (row.status, row.amount, row.last_error) else "updated"


# -- deleting old records --------------------------------------------------------------------


def old_final_query(processor_id: int | None, before: datetime):
    """Local records of intents that have finished (succeeded, cancelled, or gone from Stripe) and were
    created before ``before``: what ``process-stripe --delete-old`` removes."""
    from sqlalchemy import or_

    q = select(StripePaymentIntent.id).where(
        StripePaymentIntent.created_date < before,
        or_(StripePaymentIntent.status.in_(FINAL), StripePaymentIntent.flags == GONE),
    )
    if processor_id is not None:
        q = q.where(StripePaymentIntent.processor_id == processor_id)
    return q


def delete_intent_records(ids: list[int], *, job_id: int | None = None) -> int:
    """Delete these local intent records (never anything in Stripe), with one audit entry. Commits."""
    if not ids:
        return 0
    immediate()
    rows = db.session.execute(
        select(StripePaymentIntent.stripe_intent_id, StripePaymentIntent.processor_id).where(
            StripePaymentIntent.id.in_(ids)
        )
    ).all()
    n = rowcount(db.session.execute(delete(StripePaymentIntent).where(StripePaymentIntent.id.in_(ids))))
    audit.record(
        "intent.delete_old",
        object_type="job" if job_id else None,
        object_id=str(job_id) if job_id else None,
        parameters={"count": n, "intents": sorted(r[0] for r in rows)[:20]},
        message=f"deleted {n} old local intent record{'s' if n != 1 else ''} (Stripe is not changed)",
        commit=False,
    )
    db.session.commit()
    return n
