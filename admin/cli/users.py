"""``user``: staff accounts."""

from __future__ import annotations

import sys

import click

from admin.cli.support import PaydeskGroup, emit, format_option

user_cli = PaydeskGroup("user", help="Staff accounts.")


@user_cli.command("create")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), default="viewer", show_default=True)
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
    emit([{"id": u.id, "email": u.email, "role": u.role, "active": u.active,
           "last_login_at": u.last_login_at} for u in users], fmt)


