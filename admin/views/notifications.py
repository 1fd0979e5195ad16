"""``/settings/notifications``: the URLs that receive signed notifications, their secrets and history (admins)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from admin.errors import ServiceError
from admin.listing import page_or_first
from admin.models import NOTIFICATION_TYPES
from admin.security import role_required
from admin.services.notifications import delivery, endpoints

bp = Blueprint("notifications", __name__)


def _index(new=None, error=None, form=None, status=200):
    return render_template(
        "settings/notifications.html",
        hooks=endpoints.list_endpoints(),
        new=new,
        error=error,
        form=form or {},
        types=NOTIFICATION_TYPES,
    ), status


def _show(endpoint_id: int, new=None, error=None, status=200):
    endpoint = endpoints.find_endpoint(endpoint_id)
    flt, errors = delivery.DeliveryFilter.from_args(request.args)
    page = page_or_first(lambda f: delivery.delivery_page(endpoint.id, f), flt, errors)
    return render_template(
        "settings/notification.html",
        hook=endpoint,
        page=page,
        flt=flt,
        errors=errors,
        new=new,
        error=error,
        previous_active=endpoints.previous_active(endpoint),
        statuses=delivery.DELIVERY_STATUSES,
    ), status


@bp.get("/settings/notifications")
@role_required("admin")
def index():
    return _index()


@bp.post("/settings/notifications")
@role_required("admin")
def add():
    form = request.form
    try:
        made = endpoints.add_endpoint(form.get("url", ""), form.getlist("events"), form.get("description"))
    except ServiceError as err:
        return _index(error=err, form=form, status=422)
    return _index(new=made)


@bp.get("/settings/notifications/<id:endpoint_id>")
@role_required("admin")
def show(endpoint_id: int):
    try:
        return _show(endpoint_id)
    except ServiceError as err:
        flash(err.message, "error")
        return redirect(url_for("notifications.index"))


@bp.post("/settings/notifications/<id:endpoint_id>/rotate")
@role_required("admin")
def rotate(endpoint_id: int):
    hours = (request.form.get("hours") or "").strip()
    try:
        if hours and not hours.isdigit():
            raise ServiceError("Old secret signs for: a number of hours (0: stops now)", field="hours")
        made = endpoints.rotate_secret(endpoint_id, int(hours) if hours else None)
    except ServiceError as err:
        if err.field == "endpoint":
            flash(err.message, "error")
            return redirect(url_for("notifications.index"))
        return _show(endpoint_id, error=err, status=422)
    return _show(endpoint_id, new=made)


@bp.post("/settings/notifications/<id:endpoint_id>/remove")
@role_required("admin")
def remove(endpoint_id: int):
    try:
        removed = endpoints.remove_endpoint(endpoint_id)
    except ServiceError as err:
        flash(err.message, "error")
    else:
        flash(f"{removed.url} removed: it receives no more notifications.", "success")
    return redirect(url_for("notifications.index"))


@bp.post("/settings/notifications/deliveries/<id:delivery_id>/resend")
@role_required("admin")
def resend(delivery_id: int):
    try:
        row = delivery.resend(delivery_id)
    except ServiceError as err:
        flash(err.message[:1].upper() + err.message[1:], "error")
        endpoint_id = request.form.get("endpoint", type=int)
        return redirect(
            url_for("notifications.show", endpoint_id=endpoint_id)
            if endpoint_id
            else url_for("notifications.index")
        )
    flash(f"Notification {row.delivery.notification_id} queued to be sent again.", "success")
    return redirect(url_for("notifications.show", endpoint_id=row.delivery.endpoint_id))
