"""Staff sign-in and sign-out: ``/login`` (password), ``/login/code`` (the second factor), ``POST /logout``."""

from __future__ import annotations

import time

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

from admin.forms import CodeForm, EmptyForm, LoginForm
from admin.htmx import is_htmx
from admin.security import safe_next
from admin.services.staff import sessions
from admin.services.staff.auth import authenticate, second_factor, sign_out

bp = Blueprint("auth", __name__)
PENDING = "paydesk_code_step"  # the Flask session's entry between the password and the code


def _user_agent() -> str:
    return request.headers.get("User-Agent", "")


def _begin_session(result, next_url: str):
    """A fresh session: nothing from before sign-in survives, the CSRF token included."""
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    login_user(result.user)
    session[sessions.SESSION_KEY] = result.session_key
    return redirect(next_url)


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = safe_next(request.args.get("next"), default=url_for("dashboard.index"))
    if current_user.is_authenticated:
        return redirect(next_url)
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        result = authenticate(form.email.data, form.password.data, request.remote_addr, _user_agent())
        if result.needs_code:
            session.clear()
            session[PENDING] = {
                "user": result.user.id,
                "token": result.user.session_token,
                "at": time.time(),
                "next": next_url,
            }
            return redirect(url_for("auth.code"))
        if result.ok:
            return _begin_session(result, next_url)
        form.form_errors.append(result.error)
        status = 429 if result.locked_seconds else 422
    elif form.is_submitted():
        status = 422
    return render_template("auth/login.html", form=form), status


@bp.route("/login/code", methods=["GET", "POST"])
def code():
    pending = session.get(PENDING)
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    if not isinstance(pending, dict):
        flash("Sign in with your email and password first.", "info")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        result = second_factor(
            pending.get("user"),
            pending.get("token"),
            pending.get("at"),
            form.code.data,
            request.remote_addr,
            _user_agent(),
        )
        if result.ok:
            return _begin_session(result, safe_next(pending.get("next"), default=url_for("dashboard.index")))
        if result.start_over:
            session.pop(PENDING, None)
            flash(result.error, "error")
            return redirect(url_for("auth.login"))
        form.code.errors = [result.error]
        status = 429 if result.locked_seconds else 422
    elif form.is_submitted():
        status = 422
    return render_template("auth/code.html", form=form), status


@bp.post("/logout")
def logout():
    form = EmptyForm()
    if form.validate_on_submit() and current_user.is_authenticated:
        sign_out(current_user._get_current_object(), request.remote_addr, sessions.current_id())
        logout_user()
        session.clear()
        flash("You are signed out.", "info")
    target = url_for("auth.login")
    if is_htmx():
        response = make_response("", 200)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)
