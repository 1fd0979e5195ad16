"""The signed-in person's own account: ``/account`` (password, two-factor sign-in, sessions).

Every role may change its own password and two factors (nobody else's: no URL here names an account).
``gate`` keeps someone who must first change a temporary password, or (an admin, with
``REQUIRE_2FA_FOR_ADMINS``) set up two-factor sign-in, on that page until it is done.
"""

from __future__ import annotations

from flask import Blueprint, Flask, flash, make_response, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user

from admin.errors import ServiceError
from admin.forms import CodeForm, EmptyForm, PasswordChangeForm
from admin.htmx import is_htmx
from admin.security import role_required
from admin.services.staff import sessions, totp
from admin.services.staff.users import change_own_password

bp = Blueprint("account", __name__)
_OPEN = ("static", "auth.logout", "auth.login", "auth.code")
_TWO_FACTOR_STEPS = ("account.two_factor", "account.start_two_factor", "account.confirm_two_factor")
_SKIP_BLUEPRINTS = ("webhooks", "donate", "health", "errors", "api")


def _me():
    return current_user._get_current_object()


@bp.get("/account")
@role_required("viewer")
def index():
    user = _me()
    return render_template(
        "account/index.html",
        user=user,
        codes_left=totp.remaining_codes(user),
        required=totp.required(user),
        open_sessions=sessions.open_sessions(user),
    )


@bp.route("/account/password", methods=["GET", "POST"])
@role_required("viewer")
def password():
    form = PasswordChangeForm()
    status = 200
    if form.validate_on_submit():
        if form.password.data != form.confirm.data:
            form.confirm.errors = ["New password again: the two new passwords differ."]
        else:
            try:
                user = change_own_password(
                    _me(), form.current.data, form.password.data, sessions.current_id()
                )
            except ServiceError as err:
                field = getattr(form, err.field or "", None) or form.password
                field.errors = [err.message[0].upper() + err.message[1:]]
            else:
                key = session.get(sessions.SESSION_KEY)
                login_user(user)  # the account's session token changed: this browser goes on with the new one
                session[sessions.SESSION_KEY] = key
                flash("Your password is changed. Your other sessions have ended.", "success")
                return redirect(url_for("account.index"))
        status = 422
    elif form.is_submitted():
        status = 422
    return render_template("account/password.html", form=form, forced=_me().must_change_password), status


@bp.get("/account/2fa")
@role_required("viewer")
def two_factor():
    user = _me()
    secret = totp.pending_secret(user)
    qr = totp.qr_svg(totp.provisioning_uri(user, secret)) if secret else None
    return render_template(
        "account/two_factor.html",
        user=user,
        secret=secret and totp.grouped(secret),
        qr=qr,
        codes_left=totp.remaining_codes(user),
        required=totp.required(user),
        form=CodeForm(),
        start_form=EmptyForm(),
    )


@bp.post("/account/2fa/start")
@role_required("viewer")
def start_two_factor():
    if EmptyForm().validate_on_submit():
        try:
            totp.begin(_me())
        except ServiceError as err:
            flash(err.message[0].upper() + err.message[1:], "error")
    return redirect(url_for("account.two_factor"))


def _codes_page(codes: list[str], title: str):
    return render_template("account/recovery_codes.html", codes=codes, title=title)


def _code_action(action, done_title: str | None, done_message: str | None = None):
    form = CodeForm()
    if form.validate_on_submit():
        try:
            codes = action(_me(), form.code.data)
        except ServiceError as err:
            flash(err.message[0].upper() + err.message[1:], "error")
        else:
            if done_title:
                return _codes_page(codes, done_title)
            flash(done_message or "", "success")  # given wherever done_title is not
            return redirect(url_for("account.index"))
    else:
        flash("Enter the code your authenticator app shows now.", "error")
    return redirect(url_for("account.two_factor"))


@bp.post("/account/2fa/confirm")
@role_required("viewer")
def confirm_two_factor():
    return _code_action(totp.confirm, "Two-factor sign-in is on")


@bp.post("/account/2fa/recovery-codes")
@role_required("viewer")
def new_recovery_codes():
    return _code_action(totp.regenerate_recovery_codes, "New recovery codes")


@bp.post("/account/2fa/disable")
@role_required("viewer")
def disable_two_factor():
    return _code_action(totp.disable, None, "Two-factor sign-in is off.")


def gate():
    """Before any staff page: a temporary password must be changed, and an admin who must use two-factor
    sign-in must set it up, before anything else (sign-out always works)."""
    if request.endpoint in _OPEN or request.blueprint in _SKIP_BLUEPRINTS or request.endpoint is None:
        return None
    if not current_user.is_authenticated:
        return None
    if current_user.must_change_password:
        target, allowed = "account.password", ("account.password",)
        message = "Choose a new password to replace the temporary one."
    elif totp.required(current_user) and not current_user.two_factor:
        target, allowed = "account.two_factor", _TWO_FACTOR_STEPS
        message = "Admins here must use two-factor sign-in: set it up to go on."
    else:
        return None
    if request.endpoint in allowed:
        return None
    url = url_for(target)
    if is_htmx():
        response = make_response("", 403)
        response.headers["HX-Redirect"] = url
        return response
    flash(message, "info")
    return redirect(url)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(gate)
