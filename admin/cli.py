"""``flask --app wsgi GROUP COMMAND``: the command-line surface.

Listings take ``--format table|json``; JSON output is an array of objects.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from .services import ServiceError


def emit(rows: list[dict[str, Any]], fmt: str, columns: list[str] | None = None) -> None:
    """Print ``rows`` as JSON (an array of objects) or as an aligned text table."""
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("(none)")
        return
    columns = columns or list(rows[0].keys())
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="Output format.")


def fail(err: Exception) -> None:
    click.echo(f"Error: {getattr(err, 'message', None) or err}", err=True)
    sys.exit(1)


# -- processor ------------------------------------------------------------------

processor_cli = AppGroup("processor", help="Payment processors (Stripe accounts).")


@processor_cli.command("add")
@click.option("--name", required=True)
@click.option("--secret-key", required=True, help="sk_test_… or sk_live_… (stored encrypted).")
@click.option("--publishable-key")
@click.option("--webhook-secret", "webhook_secrets", multiple=True, help="whsec_…; repeat while rotating.")
@click.option("--api-base", help="Stripe API base URL, e.g. http://127.0.0.1:8420 for localstripe.")
@click.option("--mode", type=click.Choice(["test", "live"]), default="test", show_default=True)
@click.option("--default", "is_default", is_flag=True, help="Make this the default processor.")
@format_option
def processor_add(name, secret_key, publishable_key, webhook_secrets, api_base, mode, is_default, fmt):
    """Register a Stripe account; prints its id (the ppid)."""
    from .services.processors import add_processor

    try:
        proc = add_processor(name=name, secret_key=secret_key, publishable_key=publishable_key,
                             webhook_secrets=list(webhook_secrets), api_base=api_base, mode=mode, default=is_default)
    except ServiceError as err:
        fail(err)
    if fmt == "json":
        click.echo(json.dumps(proc.public_dict()))
    else:
        click.echo(proc.id)


@processor_cli.command("list")
@format_option
def processor_list(fmt):
    """List processors; keys and secrets are shown masked."""
    from .services.processors import list_processors

    emit([p.public_dict() for p in list_processors()], fmt,
         ["id", "name", "mode", "default", "active", "secret_key", "webhook_secrets", "api_base"])


@processor_cli.command("set")
@click.argument("ppid")
@click.option("--name")
@click.option("--secret-key")
@click.option("--publishable-key")
@click.option("--webhook-secret", "webhook_secrets", multiple=True, help="Replace all signing secrets.")
@click.option("--add-webhook-secret", "add_secrets", multiple=True, help="Add a signing secret (rotation).")
@click.option("--remove-webhook-secret", "remove_secrets", multiple=True,
              help="Remove a signing secret (whole value or its last characters).")
@click.option("--api-base")
@click.option("--mode", type=click.Choice(["test", "live"]))
@click.option("--default", "is_default", is_flag=True, default=None)
@click.option("--active/--inactive", default=None)
@format_option
def processor_set(ppid, name, secret_key, publishable_key, webhook_secrets, add_secrets, remove_secrets, api_base,
                  mode, is_default, active, fmt):
    """Change a processor's settings."""
    from .services.processors import get_processor, update_processor

    try:
        proc = update_processor(get_processor(ppid), name=name, secret_key=secret_key,
                                publishable_key=publishable_key,
                                webhook_secrets=list(webhook_secrets) or None, add_webhook_secrets=list(add_secrets),
                                remove_webhook_secrets=list(remove_secrets), api_base=api_base, mode=mode,
                                default=is_default, active=active)
    except ServiceError as err:
        fail(err)
    emit([proc.public_dict()], fmt)


# -- user -----------------------------------------------------------------------

user_cli = AppGroup("user", help="Staff accounts.")


@user_cli.command("create")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_create(email, role, password_stdin):
    """Create a staff account (the password is prompted for unless --password-stdin)."""
    from .services.users import create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(email, password, role)
    except ServiceError as err:
        fail(err)
    click.echo(f"created {user.role} {user.email} (id {user.id})")


@user_cli.command("list")
@format_option
def user_list(fmt):
    """List staff accounts."""
    from sqlalchemy import select

    from .extensions import db
    from .models import User

    users = db.session.scalars(select(User).order_by(User.id))
    emit([{"id": u.id, "email": u.email, "role": u.role, "active": u.active,
           "last_login_at": u.last_login_at} for u in users], fmt)


def register_cli(app: Flask) -> None:
    from .cli_events import register as register_event_cli
    from .cli_imports import register as register_import_cli
    from .cli_jobs import register as register_job_cli
    from .cli_records import register as register_record_cli
    from .webhooks.cli import register as register_webhook_cli

    app.cli.add_command(processor_cli)
    app.cli.add_command(user_cli)
    register_webhook_cli(app)
    register_record_cli(app)
    register_event_cli(app)
    register_job_cli(app)
    register_import_cli(app)
