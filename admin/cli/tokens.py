"""``flask --app wsgi tokens create|list|revoke``: API tokens (the same service as /settings/tokens)."""

from __future__ import annotations

import json

import click
from flask import Flask

from admin.cli.support import PaydeskGroup, emit, format_option

tokens_cli = PaydeskGroup("tokens", help="API tokens for /api/v1 (shown once when made, kept as a digest).")


def token_dict(token) -> dict:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "scopes": token.scope_list,
        "expires_at": token.expires_at.isoformat(timespec="seconds") if token.expires_at else None,
        "last_used_at": token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else None,
        "status": token.status(),
        "created_at": token.created_at.isoformat(timespec="seconds"),
    }


@tokens_cli.command("create")
@click.option("--name", required=True, help="What uses the token (unique).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["read", "write"]),
    help="read (default) or write (which includes read); repeatable.",
)
@click.option(
    "--days",
    type=click.IntRange(0, 3650),
    default=90,
    show_default=True,
    help="Expires after this many days (0: never).",
)
@format_option
def tokens_create(name, scopes, days, fmt):
    """Make a token; prints it once (paydesk keeps only a digest)."""
    from admin.services.settings.tokens import create_token

    made = create_token(name, list(scopes) or ["read"], days=days)
    if fmt == "json":
        click.echo(json.dumps({**token_dict(made.token), "token": made.secret}))
    else:
        click.echo(made.secret)
        click.echo(
            f"Token {made.token.id} “{made.token.name}” ({', '.join(made.token.scope_list)}); "
            "copy it now: it is not shown again.",
            err=True,
        )


@tokens_cli.command("list")
@format_option
def tokens_list(fmt):
    """List tokens (never their secrets)."""
    from admin.services.settings.tokens import list_tokens

    emit(
        [token_dict(t) for t in list_tokens()],
        fmt,
        ["id", "name", "prefix", "scopes", "expires_at", "last_used_at", "status"],
    )


@tokens_cli.command("revoke")
@click.argument("token")
@format_option
def tokens_revoke(token, fmt):
    """Revoke a token by id or name: it stops working at once."""
    from admin.services.settings.tokens import revoke_token

    revoked = revoke_token(token)
    if fmt == "json":
        click.echo(json.dumps(token_dict(revoked)))
    else:
        click.echo(f"Token {revoked.id} “{revoked.name}” revoked.")


def register(app: Flask) -> None:
    app.cli.add_command(tokens_cli)
