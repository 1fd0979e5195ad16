"""``/settings/tokens``: API tokens, made and revoked by admins (the secret is shown once)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from admin.errors import ServiceError
from admin.security import role_required
from admin.services.settings import tokens

bp = Blueprint("settings", __name__)


@bp.get("/settings/tokens")
@role_required("admin")
def tokens_index():
    return render_template("settings/tokens.html", tokens=tokens.list_tokens(), new=None, error=None, form={})


@bp.post("/settings/tokens")
@role_required("admin")
def tokens_create():
    form = request.form
    days_text = (form.get("days") or "").strip()
    try:
        if days_text and not days_text.isdigit():
            raise ServiceError("Expires after: a number of days (0: never)", field="days")
        made = tokens.create_token(
            form.get("name", ""), form.getlist("scopes") or ["read"], days=int(days_text) if days_text else 90
        )
    except ServiceError as err:
        return render_template(
            "settings/tokens.html", tokens=tokens.list_tokens(), new=None, error=err, form=form
        ), 422
    return render_template("settings/tokens.html", tokens=tokens.list_tokens(), new=made, error=None, form={})


@bp.post("/settings/tokens/<id:token_id>/revoke")
@role_required("admin")
def tokens_revoke(token_id: int):
    try:
        token = tokens.revoke_token(token_id)
    except ServiceError as err:
        flash(err.message, "error")
    else:
        flash(f"Token “{token.name}” revoked: it no longer works.", "success")
    return redirect(url_for("settings.tokens_index"))
