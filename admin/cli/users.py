"""``user``: staff accounts. ``role``, ``deactivate``, ``activate``, ``reset-password``, ``sessions`` and
``2fa reset`` do what the users page (``/settings/users``) does, through the same services
(``admin.services.staff``)."""

from __future__ import annotations

import json
import sys

import click

from admin.cli.support import PaydeskGroup, emit, format_option

user_cli = PaydeskGroup("user", help="Staff accounts.")


@user_cli.command("create")
@click.option("--email", required=True)
@click.option(
    "--role", type=click.Choice(["viewer", "operator", "admin"]), default="viewer", show_default=True
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_create(email, role, password_stdin):
    """Create a staff account (the password is prompted for unless --password-stdin)."""
    from admin.extensions import db
    from admin.services.staff.users import check_new_user, create_user

    check_new_user(email, role)  # a refused address is said before the password is asked for
    db.session.rollback()  # no transaction stays open while someone types
    user = create_user(email, _read_password(password_stdin), role)
    click.echo(f"created {user.role} {user.email} (id {user.id})")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user_cli.command("set-password")
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def user_set_password(email, password_stdin):
    """Give a staff account a new password; every session it has ends."""
    from admin.services.staff.users import get_user, set_password

    user = get_user(email)
    set_password(user, _read_password(password_stdin))
    click.echo(f"new password set for {user.email}; all of its sessions have ended")


@user_cli.command("revoke-sessions")
@click.option("--email", required=True)
def user_revoke_sessions(email):
    """End every session of a staff account now (each browser must sign in again)."""
    from admin.services.staff.users import get_user, revoke_sessions

    user = revoke_sessions(get_user(email))
    click.echo(f"all sessions of {user.email} have ended")


@user_cli.command("list")
@format_option
def user_list(fmt):
    """List staff accounts."""
    from sqlalchemy import select

    from admin.extensions import db
    from admin.models import User

    users = db.session.scalars(select(User).order_by(User.id))
    emit(
        [
            {
                "id": u.id,
                "email": u.email,
                "role": u.role,
                "active": u.active,
                "two_factor": u.two_factor,
                "last_login_at": u.last_login_at,
            }
            for u in users
        ],
        fmt,
    )


email_option = click.option("--email", required=True, help="The account's email.")


@user_cli.command("role")
@email_option
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
def user_role(email, role):
    """Give a staff account another role (the last active admin stays one)."""
    from admin.services.staff.users import change_role, get_user

    user = change_role(get_user(email), role)
    click.echo(f"{user.email} is now {user.role}")


@user_cli.command("deactivate")
@email_option
def user_deactivate(email):
    """Stop a staff account from signing in; every session it has ends (its history stays)."""
    from admin.services.staff.users import deactivate, get_user

    user = deactivate(get_user(email))
    click.echo(f"{user.email} is deactivated; all of its sessions have ended")


@user_cli.command("activate")
@email_option
def user_activate(email):
    """Let a deactivated staff account sign in again."""
    from admin.services.staff.users import activate, get_user

    user = activate(get_user(email))
    click.echo(f"{user.email} may sign in again")


@user_cli.command("reset-password")
@email_option
@format_option
def user_reset_password(email, fmt):
    """Give a staff account a temporary password (printed once) to replace at its next sign-in."""
    from flask import current_app

    from admin.services.staff.users import get_user, reset_password

    user = get_user(email)
    password = reset_password(user)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "email": user.email,
                    "temporary_password": password,
                    "expires_at": user.password_expires_at.isoformat(),
                }
            )
        )
        return
    hours = current_app.config["TEMP_PASSWORD_HOURS"]
    click.echo(f"temporary password for {user.email}: {password}")
    click.echo(
        f"it works for {hours} hours, only to choose a new password; all sessions of the account have ended"
    )


@user_cli.command("sessions")
@email_option
@format_option
def user_sessions(email, fmt):
    """List a staff account's open sessions (end them with `user revoke-sessions`)."""
    from admin.services.staff.sessions import open_sessions
    from admin.services.staff.users import get_user

    rows = [
        {
            "id": s.id,
            "browser": s.browser,
            "address": s.address,
            "created": s.created_at,
            "last_seen_at": s.last_seen_at,
        }
        for s in open_sessions(get_user(email))
    ]
    emit(rows, fmt, ["id", "browser", "address", "created", "last_seen_at"])


two_factor_cli = PaydeskGroup("2fa", help="Two-factor sign-in of staff accounts.")


@two_factor_cli.command("reset")
@email_option
def user_2fa_reset(email):
    """Take two-factor sign-in off an account (its owner lost the device); they set it up again."""
    from admin.services.staff.totp import reset
    from admin.services.staff.users import get_user

    user = reset(get_user(email))
    click.echo(
        f"two-factor sign-in of {user.email} is reset; the password alone signs in until it is set up again"
    )


user_cli.add_command(two_factor_cli)
