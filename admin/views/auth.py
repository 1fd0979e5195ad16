"""Staff sign-in and sign-out: ``/login``, ``POST /logout``."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user

from admin.forms import EmptyForm, LoginForm
from admin.htmx import is_htmx
from admin.security import safe_next
from admin.services.staff.auth import authenticate, sign_out

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = safe_next(request.args.get("next"), default=url_for("dashboard.index"))
    if current_user.is_authenticated:
        return redirect(next_url)
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        result = authenticate(form.email.data, form.password.data, request.remote_addr)
        if result.ok:
            # A fresh session: nothing from before sign-in survives, the CSRF token included.
            session.clear()
            g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
            login_user(result.user)
            return redirect(next_url)
        form.form_errors.append(result.error)
        status = 429 if result.locked_seconds else 422
    elif form.is_submitted():
        status = 422
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
def logout():
    form = EmptyForm()
    if form.validate_on_submit() and current_user.is_authenticated:
        sign_out(current_user._get_current_object(), request.remote_addr)
        logout_user()
        session.clear()
        flash("You are signed out.", "info")
    target = url_for("auth.login")
    if is_htmx():
        response = make_response("", 200)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)
