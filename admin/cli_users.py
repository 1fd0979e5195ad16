"""``flask --app wsgi user role|deactivate|activate|reset-password|sessions|2fa reset``: what the users page
(``/settings/users``) does, through the same services (``services.users``, ``services.staff``)."""

from __future__ import annotations

import json

import click
from flask import Flask

from .cli import PaydeskGroup, emit, format_option, user_cli

email_option = click.option("--email", required=True, help="The account's email.")


@user_cli.command("role")
@email_option
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
def user_role(email, role):
    """Give a staff account another role (the last active admin stays one)."""
    from .services.users import change_role, get_user

    user = change_role(get_user(email), role)
    click.echo(f"{user.email} is now {user.role}")


@user_cli.command("deactivate")
@email_option
def user_deactivate(email):
    """Stop a staff account from signing in; every session it has ends (its history stays)."""
    from .services.users import deactivate, get_user

    user = deactivate(get_user(email))
    click.echo(f"{user.email} is deactivated; all of its sessions have ended")


@user_cli.command("activate")
@email_option
def user_activate(email):
    """Let a deactivated staff account sign in again."""
    from .services.users import activate, get_user

    user = activate(get_user(email))
    click.echo(f"{user.email} may sign in again")


@user_cli.command("reset-password")
@email_option
@format_option
def user_reset_password(email, fmt):
    """Give a staff account a temporary password (printed once) to replace at its next sign-in."""
    from flask import current_app

    from .services.users import get_user, reset_password

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
    from .services.staff.sessions import open_sessions
    from .services.users import get_user

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
    from .services.staff.totp import reset
    from .services.users import get_user

    user = reset(get_user(email))
    click.echo(
        f"two-factor sign-in of {user.email} is reset; the password alone signs in until it is set up again"
    )


def register(app: Flask) -> None:
    if "2fa" not in user_cli.commands:
        user_cli.add_command(two_factor_cli)
