"""Staff accounts for admins: ``/settings/users`` (list, add), ``/settings/users/<id>`` (role, deactivate,
password reset, two-factor reset, sessions). Each button is a plain POST with CSRF that calls one service
in ``services.users`` / ``services.staff`` (the ones the ``user`` CLI calls) and comes back with a message.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from admin.errors import ServiceError
from admin.forms import EmptyForm, NewUserForm, RoleForm
from admin.security import role_required
from admin.services.core import audit
from admin.services.staff import sessions, totp
from admin.services.staff import users as users_service
from admin.views.actions import sentence

bp = Blueprint("users", __name__, url_prefix="/settings/users")


def _user(user_id: int):
    user = users_service.get_user_by_id(user_id)
    if user is None:
        abort(404, description=f"There is no staff account {user_id}.")
    return user


@bp.get("")
@role_required("admin")
def index():
    return _list(NewUserForm())


def _list(form: NewUserForm, status: int = 200):
    return render_template(
        "users/index.html",
        users=users_service.list_users(),
        counts=sessions.open_counts(),
        form=form,
        required=totp.required,
    ), status


@bp.post("")
@role_required("admin")
def create():
    form = NewUserForm()
    if not form.validate_on_submit():
        return _list(form, 422)
    try:
        user, password = users_service.invite_user(form.email.data, form.role.data)
    except ServiceError as err:
        field = getattr(form, err.field or "", None) or form.email
        field.errors = [sentence(err.message)]
        return _list(form, 422)
    return render_template("users/temporary_password.html", user=user, password=password, created=True)


@bp.get("/<id:user_id>")
@role_required("admin")
def show(user_id: int):
    user = _user(user_id)
    return render_template(
        "users/show.html",
        user=user,
        role_form=RoleForm(role=user.role),
        open_sessions=sessions.open_sessions(user),
        codes_left=totp.remaining_codes(user),
        history=audit.for_object("user", str(user.id), limit=20),
        required=totp.required(user),
    )


def _act(user_id: int, action, done: str):
    user = _user(user_id)
    if EmptyForm().validate_on_submit():
        try:
            action(user)
        except ServiceError as err:
            flash(sentence(err.message), "error")
        else:
            flash(done.format(email=user.email), "success")
    return redirect(url_for("users.show", user_id=user_id))


@bp.post("/<id:user_id>/role")
@role_required("admin")
def role(user_id: int):
    form = RoleForm()
    return _act(
        user_id,
        lambda u: users_service.change_role(u, form.role.data),
        "{email} is now " + str(form.role.data) + ".",
    )


@bp.post("/<id:user_id>/deactivate")
@role_required("admin")
def deactivate(user_id: int):
    return _act(user_id, users_service.deactivate, "{email} is deactivated; its sessions have ended.")


@bp.post("/<id:user_id>/activate")
@role_required("admin")
def activate(user_id: int):
    return _act(user_id, users_service.activate, "{email} may sign in again.")


@bp.post("/<id:user_id>/2fa/reset")
@role_required("admin")
def reset_two_factor(user_id: int):
    return _act(
        user_id,
        totp.reset,
        "Two-factor sign-in of {email} is reset: the password alone signs in until it is set up again.",
    )


@bp.post("/<id:user_id>/sessions/revoke-all")
@role_required("admin")
def revoke_all(user_id: int):
    return _act(user_id, users_service.revoke_sessions, "Every session of {email} has ended.")


@bp.post("/<id:user_id>/sessions/<id:session_id>/revoke")
@role_required("admin")
def revoke(user_id: int, session_id: int):
    return _act(
        user_id, lambda u: users_service.revoke_session(u, session_id), "That session of {email} has ended."
    )


@bp.post("/<id:user_id>/password")
@role_required("admin")
def reset_password(user_id: int):
    user = _user(user_id)
    if not EmptyForm().validate_on_submit():
        return redirect(url_for("users.show", user_id=user_id))
    password = users_service.reset_password(user)
    return render_template("users/temporary_password.html", user=user, password=password, created=False)
