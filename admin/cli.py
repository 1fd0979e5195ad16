"""``flask --app wsgi GROUP COMMAND``: the command-line surface.

Listings take ``--format table|json``; JSON output is an array of objects. Every group is a
:class:`PaydeskGroup`: bad input (an unknown option value, an id that is not a number, a
value out of range) and refused operations end in one ``Error: ...`` line and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from .dbutil import MAX_ID, parse_id
from .services import ServiceError

# Integer options that name a database row, or bound a listing: never beyond what the database holds.
ID = click.IntRange(1, MAX_ID)
MAX_LIMIT = 1_000_000


def in_app(ctx: click.Context, fn):
    """``fn()`` inside the application context (the command's app, loaded as ``with_appcontext`` loads it)."""
    from flask import has_app_context
    from flask.cli import ScriptInfo

    if has_app_context():
        return fn()
    with ctx.ensure_object(ScriptInfo).load_app().app_context():
        return fn()


def require_database(ctx: click.Context) -> None:
    """Before a command reads the database: a SQLite file that does not exist yet is not created empty
    (the command would then say "no such table"); the command ends with what to run instead."""
    from .dbutil import missing_database

    problem = in_app(ctx, missing_database)
    if problem:
        click.echo(f"Error: {problem}", err=True)
        ctx.exit(1)


def database_error(ctx: click.Context, err: Exception) -> str | None:
    """One line for an error that means the database cannot be used at all (cannot be opened or reached,
    has no tables yet), or None."""
    from .dbutil import database_problem

    try:
        return in_app(ctx, lambda: database_problem(err))
    except Exception:  # the app itself cannot be loaded: the caller reports the error as it is
        return None


_terminal = {"open_line": False}  # a progress bar drawn on stderr without a newline after it


def line_left_open(is_open: bool = True) -> None:
    """Tell the CLI that stderr's last line is (or no longer is) an unfinished progress bar."""
    _terminal["open_line"] = is_open


def end_open_line() -> None:
    """Finish a progress bar's line, so whatever comes next starts on a line of its own."""
    if _terminal["open_line"]:
        _terminal["open_line"] = False
        click.echo("", err=True)


class _OwnLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        end_open_line()
        return True


@contextmanager
def command_logging():
    """While a command runs: paydesk's INFO lines are left out (the command prints what it did, a job its
    result), and what is still logged (warnings, errors) starts on a line of its own, never glued onto a
    progress bar."""
    own = logging.getLogger("admin")
    level = own.level
    own.setLevel(max(logging.WARNING, level))
    keep_lines = _OwnLine()
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(keep_lines)
    try:
        yield
    finally:
        own.setLevel(level)
        for handler in handlers:
            handler.removeFilter(keep_lines)
        end_open_line()


class PaydeskCommand(click.Command):
    """A command that needs paydesk's database: it checks the database is there before it runs (after its
    options are read, so ``--help`` works on a fresh clone)."""

    def invoke(self, ctx: click.Context):
        require_database(ctx)
        return super().invoke(ctx)


class PaydeskGroup(AppGroup):
    """A command group whose commands answer bad input with one line on stderr, never a traceback, and
    a database that is missing, cannot be opened or has no tables with what to do about it."""

    command_class = PaydeskCommand

    def invoke(self, ctx: click.Context):
        from sqlalchemy.exc import DBAPIError, StatementError

        from .stripe_gateway import GatewayError

        try:
            with command_logging():
                return super().invoke(ctx)
        except click.UsageError as err:  # bad option value, missing option, unknown command
            click.echo(f"Error: {err.format_message()}", err=True)
            ctx.exit(2)
        except ServiceError as err:  # refused by a service, stored secrets unreadable, ...
            fail(err)
        except GatewayError as err:  # Stripe said no, or could not be reached (after paydesk's retries)
            click.echo("Error: Stripe: " + " ".join(str(err).split()), err=True)
            ctx.exit(1)
        except UnicodeError:  # argv bytes that are not UTF-8 arrive as surrogates no database takes
            click.echo("Error: an argument is not valid UTF-8 text", err=True)
            ctx.exit(2)
        except (DBAPIError, StatementError, OverflowError) as err:  # a value the database cannot hold
            problem = database_error(ctx, err)  # ... or no database to hold anything
            if problem:
                click.echo(f"Error: {problem}", err=True)
                ctx.exit(1)
            orig = getattr(err, "orig", None) or err
            first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
            click.echo(f"Error: the database refused a value ({first[:300]})", err=True)
            ctx.exit(1)


def emit(rows: list[dict[str, Any]], fmt: str, columns: list[str] | None = None) -> None:
    """Print ``rows`` as JSON (an array of objects, values as they are: minor units, Unix times, ISO
    times) or as an aligned text table, where money and times read as on the pages."""
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("(none)")
        return
    columns = columns or list(rows[0].keys())
    cells = [[_cell(_shown(c, r.get(c), r)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


# Table columns holding money in minor units (in the row's ``currency``), and times (Unix seconds,
# ISO text or datetimes, all UTC): shown as the pages show them ("1,000,000.00 USD", "2026-11-29 14:05").
MONEY_COLUMNS = frozenset({"amount", "fee", "net", "fee_amount", "net_amount", "refunded_amount", "stripe_amount",
                           "local_amount"})
TIME_FORMAT = "%Y-%m-%d %H:%M"


def _is_time_column(column: str) -> bool:
    return column == "created" or column.endswith(("_at", "_date"))


def _shown(column: str, value: Any, row: dict[str, Any]) -> Any:
    """A table cell's value as people read it; JSON output keeps the raw value."""
    from datetime import datetime

    from .money import format_money
    from .timeutil import from_unix

    if value is None or isinstance(value, bool):
        return value
    if column in MONEY_COLUMNS and isinstance(value, int) and isinstance(row.get("currency"), str):
        return format_money(value, row["currency"])
    if _is_time_column(column):
        when = value
        if isinstance(value, int | float):
            when = from_unix(value) if 0 <= value < 2**37 else None  # beyond the year 6000 is not a time
        elif isinstance(value, str):
            try:
                when = datetime.fromisoformat(value)
            except ValueError:
                when = None
        if isinstance(when, datetime):
            return when.strftime(TIME_FORMAT)
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="Output format.")


def fail(err: Exception) -> None:
    message = str(getattr(err, "message", None) or err)
    click.echo("Error: " + " ".join(message.split()), err=True)  # one line, whatever the message holds
    sys.exit(1)


ppid_option = click.option("--ppid", help="Payment processor id or name (default: the default processor).")
limit_option = click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True,
                            help=f"How many rows (1 to {MAX_LIMIT:,}).")


def with_options(options: list):
    """Apply a list of click options (shared between commands) to a command."""
    def apply(fn):
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return apply


def param_options(cls, *names: str) -> list:
    """Click options for fields of a job kind's parameter class (``services.core.params.JobParams``): the
    same names, defaults, bounds and help as the page's tool, so the two cannot drift. Whole numbers get
    their range, booleans a flag, lists a repeatable option."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if names and f.name not in names:
            continue
        kind = hints[f.name]
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind) \
            if type(None) in typing.get_args(kind) else kind
        flag = f"--{f.name.replace('_', '-')}"
        default = cls.default(f.name)
        help_text = f.metadata.get("help") or f.metadata.get("label")
        if base is bool:
            out.append(click.option(flag, f.name, is_flag=True, default=bool(default), help=help_text))
        elif base is int:
            out.append(click.option(flag, f.name, type=click.IntRange(f.metadata.get("min"), f.metadata.get("max")),
                                    default=default, show_default=default is not None, help=help_text))
        elif typing.get_origin(base) is list:
            out.append(click.option(flag, f.name, multiple=True, help=help_text + (
                f" Default: {', '.join(default)}." if default else "")))
        else:
            out.append(click.option(flag, f.name, default=default, show_default=default is not None,
                                    help=help_text))
    return out


def filter_from_options(cls, **options):
    """The filter (an ``admin.listing.Filter``) these options describe, read exactly as the page reads
    its query string; a bad option ends the command with its name and what is wrong. ``ppid`` may be a
    processor's id or name."""
    args = {k: v for k, v in options.items() if v not in (None, (), "", False)}
    if "ppid" in args and parse_id(args["ppid"]) is None:  # a name (or no processor at all): look it up
        args["ppid"] = str(processor_or_fail(args["ppid"]).id)
    args = {k: ("1" if v is True else v) for k, v in args.items()}
    try:
        return cls.parse_or_raise(args, options=True)
    except ServiceError as err:
        fail(err)


def processor_or_fail(ppid):
    """The processor named by ``--ppid`` (id or name; the default one when not given), or a one-line error."""
    from .services.processors import get_processor

    try:
        return get_processor(ppid)
    except ServiceError as err:
        fail(err)


# -- processor ------------------------------------------------------------------

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
    from .services.processors import add_processor

    proc = add_processor(name=name, secret_key=secret_key, publishable_key=publishable_key,
                         webhook_secrets=list(webhook_secrets), api_base=api_base, mode=mode, default=is_default)
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
              help="Remove a signing secret (whole value or at least its last 4 characters; must match one).")
@click.option("--force", is_flag=True, help="Allow removing the last signing secret (webhooks then fail).")
@click.option("--api-base")
@click.option("--mode", type=click.Choice(["test", "live"]))
@click.option("--default", "is_default", is_flag=True, default=None)
@click.option("--active/--inactive", default=None)
@format_option
def processor_set(ppid, name, secret_key, publishable_key, webhook_secrets, add_secrets, remove_secrets, force,
                  api_base, mode, is_default, active, fmt):
    """Change a processor's settings (PPID: its id or name)."""
    from .services.processors import get_processor, update_processor

    proc = update_processor(get_processor(ppid), name=name, secret_key=secret_key,
                            publishable_key=publishable_key,
                            webhook_secrets=list(webhook_secrets) or None, add_webhook_secrets=list(add_secrets),
                            remove_webhook_secrets=list(remove_secrets), api_base=api_base, mode=mode,
                            default=is_default, active=active, force=force)
    emit([proc.public_dict()], fmt)


# -- user -----------------------------------------------------------------------

user_cli = PaydeskGroup("user", help="Staff accounts.")


@user_cli.command("create")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_create(email, role, password_stdin):
    """Create a staff account (the password is prompted for unless --password-stdin)."""
    from .extensions import db
    from .services.users import check_new_user, create_user

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
    from .services.users import get_user, set_password

    user = get_user(email)
    set_password(user, _read_password(password_stdin))
    click.echo(f"new password set for {user.email}; all of its sessions have ended")


@user_cli.command("revoke-sessions")
@click.option("--email", required=True)
def user_revoke_sessions(email):
    """End every session of a staff account now (each browser must sign in again)."""
    from .services.users import get_user, revoke_sessions

    user = revoke_sessions(get_user(email))
    click.echo(f"all sessions of {user.email} have ended")


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


def _one_line_database_errors(app: Flask) -> None:
    """In the ``flask`` command (not under gunicorn or tests): a command paydesk does not own (``db upgrade``,
    ``shell``, ...) that meets a database it cannot open or reach prints one line instead of a traceback."""
    if click.get_current_context(silent=True) is None or getattr(sys.excepthook, "paydesk", False):
        return
    previous = sys.excepthook

    def hook(kind, exc, tb):
        from .dbutil import database_problem

        try:
            with app.app_context():
                problem = database_problem(exc)
        except Exception:
            problem = None
        if problem:
            print(f"Error: {problem}", file=sys.stderr)
        else:
            previous(kind, exc, tb)

    hook.paydesk = True
    sys.excepthook = hook


def register_cli(app: Flask) -> None:
    _one_line_database_errors(app)
    from .cli_events import register as register_event_cli
    from .cli_forms import register as register_form_cli
    from .cli_imports import register as register_import_cli
    from .cli_intents import register as register_intent_cli
    from .cli_jobs import register as register_job_cli
    from .cli_reconcile import register as register_reconcile_cli
    from .cli_records import register as register_record_cli
    from .webhooks.cli import register as register_webhook_cli

    app.cli.add_command(processor_cli)
    app.cli.add_command(user_cli)
    register_webhook_cli(app)
    register_record_cli(app)
    register_event_cli(app)
    register_intent_cli(app)
    register_job_cli(app)
    register_reconcile_cli(app)
    register_form_cli(app)
    register_import_cli(app)
