"""``processor``: payment processors (Stripe accounts)."""

from __future__ import annotations

import json

import click

from admin.cli.support import PaydeskGroup, emit, format_option

processor_cli = PaydeskGroup("processor", help="Payment processors (Stripe accounts).")


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
    from admin.services.settings.processors import add_processor

    proc = add_processor(
        name=name,
        secret_key=secret_key,
        publishable_key=publishable_key,
        webhook_secrets=list(webhook_secrets),
        api_base=api_base,
        mode=mode,
        default=is_default,
    )
    if fmt == "json":
        click.echo(json.dumps(proc.public_dict()))
    else:
        click.echo(proc.id)


@processor_cli.command("list")
@format_option
def processor_list(fmt):
    """List processors; keys and secrets are shown masked."""
    from admin.services.settings.processors import list_processors

    emit(
        [p.public_dict() for p in list_processors()],
        fmt,
        ["id", "name", "mode", "default", "active", "secret_key", "webhook_secrets", "api_base"],
    )


@processor_cli.command("set")
@click.argument("ppid")
@click.option("--name")
@click.option("--secret-key")
@click.option("--publishable-key")
@click.option("--webhook-secret", "webhook_secrets", multiple=True, help="Replace all signing secrets.")
@click.option("--add-webhook-secret", "add_secrets", multiple=True, help="Add a signing secret (rotation).")
@click.option(
    "--remove-webhook-secret",
    "remove_secrets",
    multiple=True,
    help="Remove a signing secret (whole value or at least its last 4 characters; must match one).",
)
@click.option("--force", is_flag=True, help="Allow removing the last signing secret (webhooks then fail).")
@click.option(
    "--api-base",
    help="Stripe's (https://api.stripe.com) or a host of PAYDESK_STRIPE_API_BASES; "
    "changing it needs --secret-key again.",
)
@click.option("--mode", type=click.Choice(["test", "live"]))
@click.option("--default", "is_default", is_flag=True, default=None)
@click.option("--active/--inactive", default=None)
@format_option
def processor_set(
    ppid,
    name,
    secret_key,
    publishable_key,
    webhook_secrets,
    add_secrets,
    remove_secrets,
    force,
    api_base,
    mode,
    is_default,
    active,
    fmt,
):
    """Change a processor's settings (PPID: its id or name)."""
    from admin.services.settings.processors import get_processor, update_processor

    proc = update_processor(
        get_processor(ppid),
        name=name,
        secret_key=secret_key,
        publishable_key=publishable_key,
        webhook_secrets=list(webhook_secrets) or None,
        add_webhook_secrets=list(add_secrets),
        remove_webhook_secrets=list(remove_secrets),
        api_base=api_base,
        mode=mode,
        default=is_default,
        active=active,
        force=force,
    )
    emit([proc.public_dict()], fmt)


@processor_cli.command("test")
@click.argument("ppid", required=False)
@format_option
def processor_test(ppid, fmt):
    """Test the connection: one read-only Stripe request (the account's name, or Stripe's error)."""
    from admin.services.settings.processors import check_connection, get_processor

    check = check_connection(get_processor(ppid))
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "ok": check.ok,
                    "message": check.message,
                    "account": check.account_id,
                    "request_id": check.request_id,
                }
            )
        )
    else:
        suffix = f" (Stripe request {check.request_id})" if check.request_id else ""
        click.echo(("" if check.ok else "Error: ") + check.message + suffix, err=not check.ok)
    if not check.ok:
        raise SystemExit(1)
