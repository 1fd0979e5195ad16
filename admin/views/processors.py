"""``/settings/processors`` (admin): payment processors in the browser, as ``processor add|set`` manage them,
and a "test connection" button (one read-only Stripe request: the account's name or Stripe's error)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from admin.errors import ServiceError
from admin.extensions import db
from admin.forms import ProcessorForm
from admin.models import PaymentProcessor
from admin.security import role_required
from admin.services.settings import processors as service
from admin.views.actions import action_response, sentence

bp = Blueprint("processors", __name__)


@bp.get("/settings/processors")
@role_required("admin")
def index():
    rows = [service.processor_view(p) for p in service.list_processors()]
    return render_template("settings/processors.html", rows=rows)


def _save(wtform: ProcessorForm, existing: PaymentProcessor | None):
    data = {
        name: (getattr(wtform, name).data or "").strip()
        for name in ("name", "mode", "secret_key", "publishable_key", "webhook_secret", "api_base")
    }
    try:
        if existing is None:
            return service.add_processor(
                name=data["name"],
                secret_key=data["secret_key"],
                publishable_key=data["publishable_key"] or None,
                webhook_secrets=[data["webhook_secret"]] if data["webhook_secret"] else [],
                api_base=data["api_base"] or None,
                mode=data["mode"] or "test",
                default=wtform.default.data,
            )
        return service.update_processor(
            existing,
            name=data["name"] or None,
            secret_key=data["secret_key"] or None,
            publishable_key=data["publishable_key"] or None,
            add_webhook_secrets=[data["webhook_secret"]] if data["webhook_secret"] else None,
            api_base=data["api_base"],
            mode=data["mode"] or None,
            default=wtform.default.data or None,
            active=wtform.active.data,
        )
    except ServiceError as err:
        target = getattr(
            wtform, "webhook_secret" if err.field == "webhook_secrets" else err.field or "", None
        )
        (target.errors if target is not None else wtform.form_errors).append(sentence(err.message))
        db.session.rollback()
        return None


def _editor(wtform: ProcessorForm, existing: PaymentProcessor | None = None):
    if existing is None and wtform.is_submitted() and not (wtform.name.data or "").strip():
        wtform.name.errors = ["Name: enter a name"]
    elif existing is None and wtform.is_submitted() and not (wtform.secret_key.data or "").strip():
        wtform.secret_key.errors = ["Secret key: enter the account's secret key"]
    elif wtform.validate_on_submit():
        saved = _save(wtform, existing)
        if saved is not None:
            flash(f"Processor “{saved.name}” saved (id {saved.id}).", "success")
            return redirect(url_for("processors.index"))
    status = 422 if wtform.is_submitted() else 200
    masked = service.processor_view(existing) if existing else None
    return render_template(
        "settings/processor_edit.html", wtform=wtform, existing=existing, masked=masked
    ), status


@bp.route("/settings/processors/new", methods=["GET", "POST"])
@role_required("admin")
def new():
    return _editor(ProcessorForm())


@bp.route("/settings/processors/<id:ppid>/edit", methods=["GET", "POST"])
@role_required("admin")
def edit(ppid: int):
    proc = db.session.get(PaymentProcessor, ppid) or abort(404)
    wtform = ProcessorForm(
        data={
            "name": proc.name,
            "mode": proc.mode,
            "publishable_key": proc.publishable_key,
            "api_base": proc.api_base,
            "default": proc.is_default,
            "active": proc.active,
        }
    )
    return _editor(wtform, proc)


@bp.post("/settings/processors/<id:ppid>/test")
@role_required("admin")
def connection(ppid: int):
    proc = db.session.get(PaymentProcessor, ppid) or abort(404)
    check = service.check_connection(proc)
    suffix = f" (Stripe request {check.request_id})" if check.request_id else ""
    return action_response(
        "settings/_connection.html",
        url_for("processors.index"),
        check.message + suffix,
        "success" if check.ok else "error",
        status=200,
        ppid=proc.id,
    )
