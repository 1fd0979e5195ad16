"""Putting reconciled rows right: one row (:func:`fix`), or every difference of a kept scan as the
``reconcile.fix_all`` job.

Fixing a row always looks at it afresh first (Stripe fetched again), so a fix is idempotent and "fix
all" never repeats work another fix did:

* Stripe has it right, paydesk not: replay the object's stored event (``event_ops.replay``, which
  fetches the event and its objects from Stripe), and where there is none, or the replay left a
  difference, import it (``imports.import_charge``; an invoice is settled with
  ``contributions.settle_invoice`` and its amount corrected). Receipts are never sent by a fix: the
  donor was charged long ago.
* paydesk counts as paid what Stripe does not have (or has as unpaid): the local record is marked
  Cancelled with a note (a payment no longer counts; a contribution left with no counted payment
  becomes Cancelled). This changes what the books say, so it is never done without
  ``cancel_local=True``: the page asks for confirmation, ``reconcile --fix`` and the "fix all" job need
  ``--cancel-local`` / the box ticked.

Every fix writes one audit entry in the transaction that makes it (``event.replay``, ``import.charge``,
``reconcile.settle_invoice`` or ``reconcile.cancel_local``), and the kept scans that show the row show
it as it is afterwards (``scan.update_row``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from admin.dbutil import immediate
from admin.errors import ServiceError, stripe_failure
from admin.extensions import db
from admin.models import CANCELLED, COMPLETED, Contribution, Payment, PaymentProcessor, StripeEvent
from admin.services.core import audit
from admin.services.core.jobs import JobContext, job_kind
from admin.services.core.params import JobParams
from admin.services.core.stripe_reader import StripeReader, read_then_write
from admin.services.events.ops import event_for_charge, replay
from admin.services.reconcile import scan as scans
from admin.services.reconcile.compare import SIDES, Row, compare_one, local_records, retrieve
from admin.services.reconcile.filter import MAX_DAYS, OBJECTS, PROBLEMS, ReconcileFilter
from admin.services.records.contributions import DONE, PAYMENT_VOID, read_invoice, recompute, settle_invoice
from admin.services.records.imports import import_charge
from admin.stripe_gateway import GatewayError
from admin.timeutil import from_unix, utcnow

INVOICE_EVENTS = ("invoice.paid", "invoice.payment_succeeded")
REFUND_EVENTS = (
    "charge.refunded",
    "refund.created",
    "refund.updated",
    "charge.refund.updated",
    "refund.failed",
)


def check_one(proc: PaymentProcessor, obj: str, stripe_id: str) -> Row:
    """One row as it stands now (Stripe asked again). Raises ``ServiceError`` for a bad id, or when
    neither side has the object."""
    obj, stripe_id = _checked_ref(obj, stripe_id)
    side = SIDES[obj]
    try:
        found = retrieve(StripeReader(proc), side, stripe_id)
    except GatewayError as err:
        raise ServiceError(f"Could not ask Stripe about {stripe_id}: {err.message}") from err
    local = local_records(side, proc, [stripe_id]).get(stripe_id)
    row = compare_one(side, found, local, stripe_id)
    if row is not None:
        return row
    if found is None and local is None:
        raise ServiceError(f"neither Stripe nor paydesk has {stripe_id}")
    # nothing to compare: neither side counts it as paid (a failed charge, a record already cancelled)
    row = Row(
        obj,
        stripe_id,
        from_unix((found or {}).get("created")),
        str((found or {}).get("currency") or getattr(local, "currency", "")).lower(),
        stripe_status=(found or {}).get("status") or "not in Stripe",
        detail="neither side counts it as paid",
    )
    if local is not None:
        row.local_amount, row.local_status = local.amount, local.status
        row.contribution_id = local.id if obj == "invoice" else local.contribution_id
        row.payment_id = None if obj == "invoice" else local.id
    return row


def _checked_ref(obj: str, stripe_id: str) -> tuple[str, str]:
    obj, stripe_id = (obj or "").strip(), (stripe_id or "").strip()
    if obj not in OBJECTS:
        raise ServiceError(f"{obj!r} is not one of {', '.join(OBJECTS)}", field="object")
    prefixes = SIDES[obj].prefixes
    if not stripe_id.startswith(prefixes) or len(stripe_id) > 255 or not stripe_id.replace("_", "").isalnum():
        raise ServiceError(
            f"{stripe_id!r} is not a Stripe {obj} id (they start with {' or '.join(prefixes)})", field="id"
        )
    return obj, stripe_id


@dataclass
class FixResult:
    before: Row
    after: Row
    actions: list[str]

    @property
    def in_step(self) -> bool:
        return self.after.problem is None

    @property
    def message(self) -> str:
        did = "; ".join(self.actions) or "nothing done"
        if not self.actions:
            return "Already in step: nothing to do."
        if self.in_step:
            return f"Fixed ({did}): now in step."
        return f"Tried ({did}), but it still differs: {self.after.detail}"


def fix(
    proc: PaymentProcessor, obj: str, stripe_id: str, *, cancel_local: bool = False, before: Row | None = None
) -> FixResult:
    """Bring one row in step (see the module's docstring). ``before`` is the row as ``check_one`` gave it
    a moment ago (the page's look at it, which its confirmation showed); without it the row is looked at
    now. Raises ``ServiceError`` when the row needs the local record cancelled and ``cancel_local`` is not
    given, or a step fails."""
    obj, stripe_id = _checked_ref(obj, stripe_id)
    if before is None or (before.object, before.stripe_id) != (obj, stripe_id):
        before = check_one(proc, obj, stripe_id)
    actions: list[str] = []
    if before.problem is None:
        scans.update_row(proc, before)
        return FixResult(before, before, actions)
    try:
        res = FixResult(before, *_put_right(proc, before, cancel_local, actions))
    except GatewayError as err:  # a step's own Stripe failure (a replay's fetch): a message, as every step's
        raise stripe_failure(err) from err
    scans.update_row(proc, res.after)
    return res


def _put_right(
    proc: PaymentProcessor, before: Row, cancel_local: bool, actions: list[str]
) -> tuple[Row, list[str]]:
    obj, stripe_id = before.object, before.stripe_id
    if before.remedy == "cancel":
        if not cancel_local:
            raise ServiceError(
                f"{stripe_id}: {before.detail}. Fixing this marks paydesk's record Cancelled; "
                f"confirm to do that"
            )
        actions.append(_cancel_local(proc, before))
        return check_one(proc, obj, stripe_id), actions
    event = _stored_event(proc, before)
    if event is not None:
        actions.append(_replay(proc, event))
        after = check_one(proc, obj, stripe_id)
        if after.problem is None:
            return after, actions
    if obj == "invoice":
        actions.append(_settle_invoice(proc, stripe_id))
    else:
        charge_id = stripe_id if obj == "charge" else before.charge_id
        if not charge_id:
            raise ServiceError(f"Stripe's refund {stripe_id} names no charge to import")
        import_charge(proc, charge_id, no_receipt=True)
        actions.append(f"imported {charge_id}")
    return check_one(proc, obj, stripe_id), actions


def _stored_event(proc: PaymentProcessor, row: Row) -> StripeEvent | None:
    """The stored event whose replay records this row's object, if paydesk has one."""
    if row.object == "charge":
        return event_for_charge(proc, {"id": row.stripe_id, "payment_intent": row.intent_id})
    if row.object == "refund":
        q = select(StripeEvent).where(
            StripeEvent.processor_id == proc.id,
            StripeEvent.type.in_(REFUND_EVENTS),
            (StripeEvent.object_id == row.stripe_id)
            if not row.charge_id
            else ((StripeEvent.object_id == row.stripe_id) | (StripeEvent.charge_id == row.charge_id)),
        )
    else:
        q = select(StripeEvent).where(
            StripeEvent.processor_id == proc.id,
            StripeEvent.type.in_(INVOICE_EVENTS),
            StripeEvent.invoice_id == row.stripe_id,
        )
    return db.session.scalars(q.order_by(StripeEvent.created.desc(), StripeEvent.id.desc()).limit(1)).first()


def _replay(proc: PaymentProcessor, event: StripeEvent) -> str:
    res = replay(proc, row=event, no_receipt=True)  # writes its own audit entry
    return f"replayed {event.event_id} ({event.type}): {res.status}"


def _settle_invoice(proc: PaymentProcessor, invoice_id: str) -> str:
    """Record a paid invoice as Stripe has it, its amount included. Commits, with its audit entry."""
    reader = StripeReader(proc, fresh=True)
    changed: dict[str, Any] = {"invoice": invoice_id}

    def read() -> dict:
        inv = reader.get("invoices", invoice_id)
        read_invoice(reader, proc.id, inv)  # Stripe first, then the write transaction
        return inv

    def write(inv: dict) -> Contribution:
        c = settle_invoice(reader, proc, invoice_id, no_receipt=True)
        if c is None:
            raise ServiceError(f"{invoice_id} is {inv.get('status')} in Stripe: nothing to settle")
        paid = int(inv.get("amount_paid") or 0)
        if c.amount != paid:
            changed["amount_was"], c.amount = c.amount, paid
        return c

    read_then_write(
        reader,
        "reconcile.settle_invoice",
        ("invoice", invoice_id),
        read,
        write,
        audited=lambda c: {"object_type": "contribution", "object_id": str(c.id), "parameters": changed},
    )
    return f"settled {invoice_id}" + (" and corrected its amount" if "amount_was" in changed else "")


def _cancel_local(proc: PaymentProcessor, row: Row) -> str:
    """paydesk counts as paid what Stripe does not: mark the local record Cancelled, with a note.
    Commits, with its audit entry."""
    _, actor = audit.current_actor()
    when = utcnow().strftime("%Y-%m-%d")
    immediate()
    if row.object == "invoice":
        c = db.session.get_one(Contribution, row.contribution_id)
        was = {"status": c.status, "amount": c.amount}
        c.status = CANCELLED
        c.failure_message = (f"Stripe: {row.detail}. Marked Cancelled by {actor} on {when} (reconciliation)")[
            :500
        ]
        what = f"marked contribution #{c.id} Cancelled"
    else:
        pay = db.session.get_one(Payment, row.payment_id)
        c = pay.contribution
        was = {"status": pay.status, "amount": pay.amount, "contribution_status": c.status}
        pay.status = PAYMENT_VOID
        recompute(c)
        counted = [p for p in c.payments if p.amount > 0 and p.status == COMPLETED]
        note = f"{row.object} {row.stripe_id}: {row.detail}. Marked Cancelled by {actor} on {when} (reconciliation)"
        if row.object == "charge" and not counted and c.status in DONE:
            c.status = CANCELLED
        c.failure_message = note[:500]
        what = f"marked {row.object} payment #{pay.id} Cancelled"
    audit.record(
        "reconcile.cancel_local",
        object_type="contribution",
        object_id=str(c.id),
        processor_id=proc.id,
        parameters={"object": row.object, "id": row.stripe_id, "problem": row.problem, "was": was},
        message=row.detail,
        commit=False,
    )
    db.session.commit()
    return what


# -- fix all: a job over a kept scan -----------------------------------------------------------


@dataclass
class FixAll(JobParams):
    """``reconcile.fix_all``: the kept scan it works through (the one its confirmation counted; None from the
    CLI), the period resolved to fixed times, the object and problem choices. The same bound as the page's
    filter (a period of at most ``MAX_DAYS`` days) applies when it is confirmed and when it starts."""

    since: str = field(default="", metadata={"label": "From"})
    until: str = field(default="", metadata={"label": "To"})
    object: list[str] = field(default_factory=list, metadata={"label": "Objects", "choices": OBJECTS})
    problem: list[str] = field(default_factory=list, metadata={"label": "Differences", "choices": PROBLEMS})
    cancel_local: bool = field(default=False, metadata={"label": "Also mark paydesk's records Cancelled"})
    scan: int | None = field(default=None, metadata={"label": "Scan"})

    def window(self) -> tuple[datetime, datetime]:
        try:
            since, until = datetime.fromisoformat(self.since), datetime.fromisoformat(self.until)
        except (TypeError, ValueError):
            raise ServiceError("the period of this job is damaged; start it again", field="since") from None
        if since.tzinfo or until.tzinfo:
            raise ServiceError("the period of this job is damaged; start it again", field="since")
        return since, until

    def check(self) -> None:
        since, until = self.window()
        if since >= until:
            raise ServiceError("the period's end must be after its start", field="until")
        if until - since > timedelta(days=MAX_DAYS):
            raise ServiceError(f"a period of at most {MAX_DAYS} days, please", field="since")


def job_params(flt: ReconcileFilter, *, cancel_local: bool, scan: scans.Scan | None = None) -> dict[str, Any]:
    """What a "fix all" job stores: the scan it works through (the one its confirmation counted), its
    period resolved to fixed times, the object and problem choices."""
    since, until = (scan.since, scan.until) if scan is not None else flt.window()
    return FixAll.of(
        {
            "since": since.isoformat(timespec="seconds"),
            "until": until.isoformat(timespec="seconds"),
            "object": list(flt.object),
            "problem": list(flt.problem),
            "cancel_local": bool(cancel_local),
            "scan": scan.id if scan is not None else None,
        }
    ).as_dict()


def filter_of(params: dict[str, Any]) -> ReconcileFilter:
    p = FixAll.of(params)
    flt = ReconcileFilter.parse_or_raise({"object": p.object, "problem": p.problem})
    flt.since, flt.until = p.window()
    return flt


def _chosen(r: Row, flt: ReconcileFilter, cancel_local: bool) -> bool:
    return (
        bool(r.problem)
        and (not flt.problem or r.problem in flt.problem)
        and (not flt.object or r.object in flt.object)
        and (r.remedy != "cancel" or cancel_local)
    )


def to_fix(rows: list[Row], flt: ReconcileFilter, *, cancel_local: bool) -> tuple[list[Row], list[Row]]:
    """(rows "fix all" works on, rows it leaves for staff: those needing confirmation)."""
    return (
        [r for r in rows if _chosen(r, flt, cancel_local)],
        [r for r in rows if _chosen(r, flt, True) and not _chosen(r, flt, cancel_local)],
    )


def money_totals(rows: list[Row]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for r in rows:
        if r.money:
            totals[r.money[1]] = totals.get(r.money[1], 0) + r.money[0]
    return dict(sorted(totals.items()))


def _title(p: dict) -> str:
    span = f"{str(p.get('since', ''))[:10]} to {str(p.get('until', ''))[:10]}"
    what = ", ".join(p.get("object") or []) or "charges, refunds and invoices"
    return f"Reconcile {what}, {span}: fix every difference" + (
        " (cancelling local records Stripe lacks)" if p.get("cancel_local") else ""
    )


@job_kind("reconcile.fix_all", params=FixAll, title=_title)
def fix_all(ctx: JobContext):
    """Fix every difference of a kept scan, one row per unit. The cursor is the scan's id and an index
    into its rows; each fix updates its row in the scan, so a resumed job skips what is in step. The
    scan is the one the confirmation counted (``params["scan"]``); when it is gone (or the job was
    started without one, from the CLI), a new one is taken first."""
    proc = ctx.require_processor()
    cancel_local = bool(ctx.params.get("cancel_local"))
    flt = filter_of(ctx.params)
    s = scans.get(proc, ctx.cursor.get("scan", ctx.params.get("scan")))
    if s is None or "i" not in ctx.cursor:
        fresh = "scan" in ctx.cursor  # the job's scan went away while it was paused: compare again
        if s is None:
            s = scans.take(proc, flt)
        todo, left = to_fix(s.rows, flt, cancel_local=cancel_local)
        ctx.cursor.clear()
        ctx.cursor.update(scan=s.id, i=0)
        ctx.total = ctx.done + len(todo)
        if left and not fresh:
            ctx.count("left for staff (need confirmation)", len(left))
            ctx.note(
                f"{len(left)} row(s) would mark paydesk's records Cancelled; fix them one by one on "
                f'/reconcile, or tick "also cancel"'
            )
        yield
    for i in range(int(ctx.cursor.get("i", 0)), len(s.rows)):
        r = s.rows[i]
        if _chosen(r, flt, cancel_local):
            try:
                res = fix(proc, r.object, r.stripe_id, cancel_local=cancel_local)
                ctx.count(
                    "fixed"
                    if res.actions and res.in_step
                    else "already in step"
                    if not res.actions
                    else "still differ"
                )
                if res.actions and not res.in_step:
                    ctx.note(f"{r.stripe_id}: {res.message}")
            except ServiceError as err:
                ctx.count("failed")
                ctx.note(f"{r.stripe_id}: {err.message}")
            ctx.done += 1
        ctx.cursor["i"] = i + 1
        if _chosen(r, flt, cancel_local):
            yield
