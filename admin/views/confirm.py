"""The one confirmation for every action over a filter, a selection or everything (bulk replay / ignore,
bulk cancel, reconcile's "fix all", retry all, populate, imports, "push to all", "compare all").

The action's form posts without ``step``; the view answers :func:`confirmation` with a
:class:`JobConfirmation`: how many (and how much money per currency, where money moves), what the job will
do, and the options it asks for ("Do not send receipts", a reason). Showing it stores the job kind, its
parameters and what was shown on the server (``services.core.confirmations``), bound to a single-use token
for this user that expires. Its button posts again with ``step=run`` and that token; :func:`run_step` starts
exactly the stored job, or refuses with 400 and starts nothing. htmx swaps the confirmation into the
action's result box; a browser without JavaScript gets it as a page of its own (``confirm.html``).

A single action that is no job (one Stripe call: a transfer, a refund, a staff charge, deleting a connected
account or a webhook endpoint) is confirmed the same way with ``single=True``: the view stores its checked
parameters, and on ``step=run`` :func:`take_action` uses the token up and hands back those parameters, which
the view acts on (never on values posted again).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from flask import render_template, request

from admin.errors import ServiceError
from admin.htmx import is_htmx
from admin.money import format_money
from admin.services.core import confirmations
from admin.views.actions import action_response, require_role, started_response


@dataclass
class Option:
    """Something the confirmation asks for, which ``step=run`` may set: a checkbox or a line of text."""

    name: str
    label: str
    value: Any = None
    text: bool = False  # a line of text (else a checkbox)
    required: bool = False


@dataclass
class JobConfirmation:
    title: str  # the question, with the count: "Push contact details to 12 linked Stripe customers?"
    detail: str  # what the job does
    confirm: str  # the button: "Yes, push to 12"
    action: str  # where the button posts (the tool's own URL)
    back: str  # the page the tool is on
    back_label: str
    kind: str = ""  # the job kind it starts
    params: Any = None  # the job's parameters (a dict or a JobParams): stored, run as they are
    processor_id: int | None = None
    count: int | None = None
    money: list[tuple[int, str]] = field(default_factory=list)  # (minor units, currency) per currency
    money_label: str = "Together"
    lines: list[str] = field(default_factory=list)  # a breakdown ("3 missing in paydesk")
    note: str | None = None  # what is left out
    options: list[Option] = field(default_factory=list)
    nothing: str | None = None  # said instead of a button when there is nothing to do
    target: str = "#tool-result"
    single: bool = False  # ``kind`` names a single action (one Stripe call), not a job: see take_action
    attention: bool = False  # the button looks like one that changes money or cannot be undone
    cancel_label: str = "Cancel"
    error: str | None = None
    token: str | None = None
    run_target: str | None = None  # what the step=run answer replaces (default: ``target``)
    run_swap: str = "innerHTML"

    def shown(self) -> dict[str, Any]:
        data = asdict(self)
        for k in ("params", "token", "error"):
            data.pop(k)
        data["option_names"] = [o.name for o in self.options]
        return data

    @classmethod
    def from_shown(cls, shown: dict[str, Any], **changes: Any) -> JobConfirmation:
        data = {k: v for k, v in shown.items() if k in cls.__dataclass_fields__}
        data["options"] = [Option(**o) for o in data.get("options") or []]
        data["money"] = [tuple(m) for m in data.get("money") or []]
        return cls(**{**data, **changes})


def confirmation(c: JobConfirmation, status: int = 200):
    """Answer the confirmation; unless there is nothing to do, it is stored with a fresh token first."""
    if not c.nothing and c.token is None and c.kind:
        c.token = confirmations.issue(
            c.kind,
            c.params.as_dict() if hasattr(c.params, "as_dict") else dict(c.params or {}),
            processor_id=c.processor_id,
            count=c.count,
            shown=c.shown(),
            action=c.single,
        )
    return render_template("_confirm.html" if is_htmx() else "confirm.html", c=c), status


class MoneyPlan(Protocol):
    """A single action that moves money, checked before Stripe is asked (a refund's or a staff charge's plan)."""

    @property
    def amount(self) -> int: ...

    @property
    def currency(self) -> str: ...

    def describe(self) -> str: ...

    def checked(self) -> dict[str, Any]: ...


def money_confirmation(verb: str, plan: MoneyPlan, *, kind: str, processor_id: int, **where: Any):
    """A single action that moves money asked first: "<verb> 12.50 USD?", what the plan says it does, a button
    "Yes, <verb> 12.50 USD" that looks like one moving money, and the plan's checked parameters stored for
    ``step=run`` (``where``: the rest of :class:`JobConfirmation`, action, back, back_label, target, ...)."""
    money = format_money(plan.amount, plan.currency)
    return confirmation(
        JobConfirmation(
            title=f"{verb} {money}?",
            detail=plan.describe(),
            confirm=f"Yes, {verb.lower()} {money}",
            kind=kind,
            params=plan.checked(),
            processor_id=processor_id,
            single=True,
            attention=True,
            **where,
        )
    )


def _options(c: JobConfirmation, form) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for o in c.options:
        out[o.name] = (form.get(o.name) or "").strip() if o.text else form.get(o.name) in ("1", "on", "true")
    return out


def run_step(kinds: tuple[str, ...], back: str):
    """``step=run``: start the job the confirmation named by the posted token showed, exactly as stored
    (only its own options read from this request); 400 and nothing started without a valid token for this
    user. A problem with an option (an empty reason) shows the same confirmation again with the message."""
    form = request.form
    try:
        row = confirmations.find(form.get("token"), kinds)
    except confirmations.ConfirmationRefused as err:
        return refused(err, back)
    require_role(row.kind)
    c = JobConfirmation.from_shown(row.shown, token=form.get("token"))
    options = _options(c, form)
    for o in c.options:
        o.value = options.get(o.name)
    try:
        started = confirmations.run(row, options)
    except confirmations.ConfirmationRefused as err:
        return refused(err, back)
    except ServiceError as err:
        c.error = err.message
        return confirmation(c, 422)
    return started_response(started)


def take_action(kind: str):
    """``step=run`` of a confirmed single action (a transfer, a delete: one Stripe call, no job): the stored
    confirmation with its token used up, whose ``params`` and ``processor_id`` are what the view acts on.
    Raises ``ConfirmationRefused`` (answer it with :func:`refused`) without a valid token for this user."""
    row = confirmations.find(request.form.get("token"), (kind,))
    confirmations.use(row)
    return row


def refused(err: confirmations.ConfirmationRefused, back: str):
    """The 400 answer to ``step=run`` without a confirmation this user may use (nothing is done)."""
    return action_response("_message.html", back, err.message, "error", status=400)


def confirm_import(kind: str, proc, noun: str, action: str, back: str, back_label: str):
    """The confirmation of an import of some or all of a processor's ``noun`` from Stripe (the import forms'
    "at most" and "after id")."""
    from admin.services.records.jobs import ImportSome

    p = ImportSome.from_form(request.form)
    some = f"at most {p.limit:,} {noun}" if p.limit else f"every one of its {noun}"
    after = f", after {p.starting_after}" if p.starting_after else ""
    return confirmation(
        JobConfirmation(
            f"Import {f'up to {p.limit:,}' if p.limit else 'all'} {noun} from {proc.name}?",
            f"The job reads {proc.name}'s {noun} from Stripe ({some}{after}, Stripe's newest first) and creates or "
            f"updates paydesk's records to match, one at a time. Nothing is changed in Stripe.",
            "Yes, import",
            action,
            back,
            back_label,
            kind=kind,
            params=p,
            processor_id=proc.id,
        )
    )


def is_run() -> bool:
    return request.form.get("step") == "run"
