"""``flask --app wsgi GROUP COMMAND``: the command-line surface.

Listings take ``--format table|json``; JSON output is an array of objects. Every group is a
:class:`PaydeskGroup`: bad input (an unknown option value, an id that is not a number, a
value out of range) and refused operations end in one ``Error: ...`` line and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import types
import typing
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

import click
from flask.cli import AppGroup

from admin.dbutil import MAX_ID, parse_id
from admin.errors import ServiceError, StripeFailure
from admin.listing import Amount

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
    from admin.dbutil import missing_database

    problem = in_app(ctx, missing_database)
    if problem:
        click.echo(f"Error: {problem}", err=True)
        ctx.exit(1)


def database_error(ctx: click.Context, err: Exception) -> str | None:
    """One line for an error that means the database cannot be used at all (cannot be opened or reached,
    has no tables yet), or None."""
    from admin.dbutil import database_problem

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

        from admin.stripe_gateway import GatewayError

        try:
            with command_logging():
                return super().invoke(ctx)
        except click.UsageError as err:  # bad option value, missing option, unknown command
            click.echo(f"Error: {err.format_message()}", err=True)
            ctx.exit(2)
        except StripeFailure as err:  # a service's Stripe request failed (after paydesk's retries)
            rid = err.request_id if err.request_id and err.request_id not in err.message else None
            click.echo(
                "Error: " + " ".join(err.message.split()) + (f" (Stripe request {rid})" if rid else ""),
                err=True,
            )
            ctx.exit(1)
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
MONEY_COLUMNS = frozenset(
    {"amount", "fee", "net", "fee_amount", "net_amount", "refunded_amount", "stripe_amount", "local_amount"}
)
TIME_FORMAT = "%Y-%m-%d %H:%M"


def _is_time_column(column: str) -> bool:
    return column == "created" or column.endswith(("_at", "_date"))


def _shown(column: str, value: Any, row: dict[str, Any]) -> Any:
    """A table cell's value as people read it; JSON output keeps the raw value."""
    from datetime import datetime

    from admin.money import format_money
    from admin.timeutil import from_unix

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


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)


def fail(err: Exception) -> NoReturn:
    message = str(getattr(err, "message", None) or err)
    click.echo("Error: " + " ".join(message.split()), err=True)  # one line, whatever the message holds
    sys.exit(1)


ppid_option = click.option("--ppid", help="Payment processor id or name (default: the default processor).")
limit_option = click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=50,
    show_default=True,
    help=f"How many rows (1 to {MAX_LIMIT:,}).",
)


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
        base = (
            next((a for a in typing.get_args(kind) if a is not type(None)), kind)
            if type(None) in typing.get_args(kind)
            else kind
        )
        flag = f"--{f.name.replace('_', '-')}"
        default = cls.default(f.name)
        help_text = f.metadata.get("help") or f.metadata.get("label")
        if base is bool:
            out.append(click.option(flag, f.name, is_flag=True, default=bool(default), help=help_text))
        elif base is int:
            out.append(
                click.option(
                    flag,
                    f.name,
                    type=click.IntRange(f.metadata.get("min"), f.metadata.get("max")),
                    default=default,
                    show_default=default is not None,
                    help=help_text,
                )
            )
        elif typing.get_origin(base) is list:
            out.append(
                click.option(
                    flag,
                    f.name,
                    multiple=True,
                    help=(help_text or "") + (f" Default: {', '.join(default)}." if default else ""),
                )
            )
        else:
            out.append(
                click.option(flag, f.name, default=default, show_default=default is not None, help=help_text)
            )
    return out


def filter_from_options(cls, **options):
    """The filter (an ``admin.listing.Filter``) these options describe, read exactly as the page reads
    its query string; a bad option ends the command with its name and what is wrong. ``ppid`` may be a
    processor's id or name."""
    args = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in options.items()
        if v not in (None, (), [], "", False)
    }
    if "ppid" in args and parse_id(args["ppid"]) is None:  # a name (or no processor at all): look it up
        args["ppid"] = str(processor_or_fail(args["ppid"]).id)
    args = {k: ("1" if v is True else v) for k, v in args.items()}
    try:
        return cls.parse_or_raise(args, options=True)
    except ServiceError as err:
        fail(err)


def processor_or_fail(ppid):
    """The processor named by ``--ppid`` (id or name; the default one when not given), or a one-line error."""
    from admin.services.settings.processors import get_processor

    try:
        return get_processor(ppid)
    except ServiceError as err:
        fail(err)


# What a value looks like, for fields whose label does not say (the page shows a placeholder instead).
SHAPES = {
    "q": ": part of a name or email, or a Stripe id",
    "month": " (YYYY-MM)",
    "currency": " (three letters)",
    "older_than": ' ("30 minutes", "3 days")',
    "failed_within": ' ("60 minutes")',
}


def _help_for(cls, f: dataclasses.Field, hint: Any) -> str:
    """An option's help, from the filter's own words: its label on the page, what the value looks like,
    its default."""
    text = f.metadata.get("help") or cls.label(f.name) + SHAPES.get(f.name, "")
    base = _base_type(hint)
    if base is datetime:
        text += (
            " (YYYY-MM-DD, UTC, or YYYY-MM-DDTHH:MM"
            + ("; the whole day" if f.metadata.get("end") else "")
            + ")"
        )
    elif base is Amount:
        text += " (major units, e.g. 12.50)"
    elif base is int and f.name == "ppid":
        text += " (id or name)"
    if typing.get_origin(hint) is list:
        choices = f.metadata.get("choices")
        text += (f": {', '.join(choices)}" if choices else "") + "; repeatable or comma-separated"
    if f.default not in (None, "", False, dataclasses.MISSING):
        text += f" [default: {f.default}]"
    return text


def _base_type(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def filter_options(cls, *, exclude: tuple[str, ...] = ()):
    """Click options generated from a filter's fields (an ``admin.listing.Filter``), so that a listing's
    options are the page's query parameters under the same names (``--q`` is also ``--search``), with the
    same choices and defaults; the values reach the command as keyword arguments named like the fields,
    for :func:`filter_from_options`. Paging fields are left out (the CLI has ``--limit``)."""
    hints = typing.get_type_hints(cls)
    options = []
    for f in dataclasses.fields(cls):
        if f.name in cls.PAGING or f.name in exclude:
            continue
        hint = hints[f.name]
        decls = ["--" + f.name.replace("_", "-"), *(["--search"] if f.name == "q" else []), f.name]
        kwargs: dict[str, Any] = {"help": _help_for(cls, f, hint), "default": None, "show_default": False}
        choices = f.metadata.get("choices")
        if typing.get_origin(hint) is list:
            kwargs.update(multiple=True, default=())
        elif _base_type(hint) is bool:
            kwargs.update(is_flag=True)
        if choices and typing.get_origin(hint) is not list:  # a list also takes "a,b" (checked by the filter)
            kwargs["type"] = click.Choice(list(choices))
        options.append(click.option(*decls, **kwargs))
    return with_options(options)
