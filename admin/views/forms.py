"""Donation forms for staff: ``/forms`` (viewers see the list; admins create and edit)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from wtforms.fields.choices import SelectChoice

from admin.errors import ServiceError
from admin.forms import DonationFormForm
from admin.security import role_required
from admin.services.donations.forms import (
    FormSettings,
    create_form,
    form_dict,
    get_form,
    list_forms,
    settings_of,
    update_form,
)
from admin.services.settings.processors import list_processors

bp = Blueprint("forms", __name__)


@bp.get("/forms")
@role_required("viewer")
def index():
    return render_template("forms/index.html", forms=[form_dict(f) for f in list_forms()])


def _editor(wtform: DonationFormForm, existing=None):
    wtform.processor_id.choices = [
        SelectChoice(str(p.id), f"{p.name} ({p.mode}{'' if p.publishable_key else ', no publishable key'})")
        for p in list_processors()
        if p.active
    ]
    if wtform.validate_on_submit():
        settings = FormSettings(
            **{
                name: getattr(wtform, name).data
                for name in (
                    "slug",
                    "title",
                    "processor_id",
                    "currency",
                    "amounts",
                    "frequencies",
                    "intro",
                    "allow_other_amount",
                    "min_amount",
                    "max_amount",
                    "postcode_field",
                    "thank_you_text",
                    "receipts",
                    "active",
                    "stripe_receipt",
                )
            }
        )
        try:
            saved = update_form(existing, settings) if existing else create_form(settings)
        except ServiceError as err:  # its message names the setting ("Currency: ...")
            target = getattr(wtform, err.field or "", None)
            (target.errors if target is not None else wtform.form_errors).append(err.message)
        else:
            flash(f"Donation form “{saved.title}” saved.", "success")
            return redirect(url_for("forms.index"))
    status = 422 if wtform.is_submitted() else 200
    return render_template("forms/edit.html", wtform=wtform, existing=existing), status


@bp.route("/forms/new", methods=["GET", "POST"])
@role_required("admin")
def new():
    if not list_processors():
        flash("Add a payment processor first (Settings > Processors).", "error")
        return redirect(url_for("processors.new"))
    return _editor(DonationFormForm())


@bp.route("/forms/<id:form_id>/edit", methods=["GET", "POST"])
@role_required("admin")
def edit(form_id: int):
    existing = get_form(form_id)
    if existing is None:
        abort(404)
    wtform = DonationFormForm(data=vars(settings_of(existing)))
    return _editor(wtform, existing)
