"""``/settings/webhooks`` (admin): the Stripe account's webhook endpoints, which one points at this paydesk
and which recommended event types it lacks; create one, disable or enable one, delete one (confirmed)."""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for

from admin.errors import ServiceError
from admin.htmx import is_htmx
from admin.security import role_required
from admin.services.core.confirmations import ConfirmationRefused
from admin.services.core.idempotency import new_action_key
from admin.services.settings import processors
from admin.services.settings import webhook_endpoints as service
from admin.views.actions import action_response
from admin.views.confirm import JobConfirmation, confirmation, is_run, refused, take_action

bp = Blueprint("webhook_endpoints", __name__)

DELETE_KIND = "settings.webhook_endpoint_delete"  # a single action confirmed through views/confirm.py


def _processor():
    return processors.get_processor(request.values.get("ppid") or None)


def _context(proc, message: str | None = None, tone: str = "success") -> dict:
    try:
        listing, error = service.list_endpoints(proc), None
    except ServiceError as err:
        listing, error = None, err.message
    return {
        "proc": proc,
        "listing": listing,
        "error": error,
        "message": message,
        "tone": tone,
        "recommended": service.RECOMMENDED,
        "action_key": new_action_key(),
        "processors": [p for p in processors.list_processors() if p.active],
    }


@bp.get("/settings/webhooks")
@role_required("admin")
def index():
    try:
        proc = _processor()
    except ServiceError as err:
        return render_template("settings/webhooks.html", proc=None, error=err.message, processors=[]), 404
    return render_template("settings/webhooks.html", **_context(proc))


def _answer(proc, message: str, tone: str = "success"):
    back = url_for("webhook_endpoints.index", ppid=proc.id)
    if is_htmx():
        status = 200 if tone == "success" else 422
        return render_template("settings/_webhooks.html", **_context(proc, message, tone)), status
    return action_response("settings/_webhooks.html", back, message, tone)


@bp.post("/settings/webhooks/create")
@role_required("admin")
def create():
    proc = _processor()
    try:
        made = service.create_endpoint(
            proc, url=request.form.get("url"), action_key=request.form.get("action_key")
        )
    except ServiceError as err:
        return _answer(proc, err.message, "error")
    return _answer(
        proc,
        f"Created {made.id} for {made.url} with the {len(service.RECOMMENDED)} recommended event "
        "types; its signing secret is stored beside the old one.",
    )


@bp.post("/settings/webhooks/<endpoint_id>/disable", defaults={"verb": "disable"})
@bp.post("/settings/webhooks/<endpoint_id>/enable", defaults={"verb": "enable"})
@role_required("admin")
def toggle(endpoint_id: str, verb: str):
    proc = _processor()
    try:
        done = service.set_disabled(proc, endpoint_id, verb == "disable")
    except ServiceError as err:
        return _answer(proc, err.message, "error")
    return _answer(proc, f"{done.id} is {done.status} now.")


@bp.post("/settings/webhooks/<endpoint_id>/delete")
@role_required("admin")
def delete(endpoint_id: str):
    if is_run():
        try:
            row = take_action(DELETE_KIND)
        except ConfirmationRefused as err:
            return refused(err, url_for("webhook_endpoints.index"))
        proc, endpoint_id = processors.get_processor(row.processor_id), row.params["endpoint"]
        try:
            rid = service.delete_endpoint(proc, endpoint_id)
        except ServiceError as err:
            return _answer(proc, err.message, "error")
        return _answer(proc, f"Deleted {endpoint_id} (Stripe request {rid}).")
    proc = _processor()
    try:
        endpoint_id = service.check_endpoint_id(endpoint_id)
    except ServiceError as err:
        return _answer(proc, err.message, "error")
    return confirmation(
        JobConfirmation(
            title=f"Delete webhook endpoint {endpoint_id}?",
            detail="Stripe stops sending events to its address at once. Its signing secret stays with the "
            "processor, so events already on their way still verify.",
            confirm=f"Yes, delete {endpoint_id}",
            action=url_for("webhook_endpoints.delete", endpoint_id=endpoint_id),
            back=url_for("webhook_endpoints.index", ppid=proc.id),
            back_label="Webhook endpoints",
            kind=DELETE_KIND,
            params={"endpoint": endpoint_id},
            processor_id=proc.id,
            single=True,
            attention=True,
            target="#endpoints",
        )
    )
