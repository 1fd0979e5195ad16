"""``flask --app wsgi GROUP COMMAND``: the command-line surface, one module per resource (mirroring
``admin/views``), their shared helpers (emit, fail, the format and filter options) in ``support``.

Listings take ``--format table|json``; JSON output is an array of objects. Every group is a
:class:`~admin.cli.support.PaydeskGroup`: bad input and refused operations end in one ``Error: ...`` line
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys

import click
from flask import Flask


def _one_line_database_errors(app: Flask) -> None:
    """In the ``flask`` command (not under gunicorn or tests): a command paydesk does not own (``db upgrade``,
    ``shell``, ...) that meets a database it cannot open or reach prints one line instead of a traceback."""
    if click.get_current_context(silent=True) is None or getattr(sys.excepthook, "paydesk", False):
        return
    previous = sys.excepthook

    def hook(kind, exc, tb):
        from admin.dbutil import database_problem

        try:
            with app.app_context():
                problem = database_problem(exc)
        except Exception:
            problem = None
        if problem:
            print(f"Error: {problem}", file=sys.stderr)
        else:
            previous(kind, exc, tb)

    hook.paydesk = True  # type: ignore[attr-defined]  # a function attribute marks paydesk's hook
    sys.excepthook = hook


def register_cli(app: Flask) -> None:
    """Every command group on ``app.cli`` (imported here, when the app is made, not when ``admin`` is)."""
    from admin.cli import (
        audit,
        cleanup,
        connect,
        events,
        forms,
        imports,
        intents,
        jobs,
        notifications,
        payments,
        processors,
        reconcile,
        records,
        tokens,
        users,
        webhook_endpoints,
        worker,
    )

    _one_line_database_errors(app)
    app.cli.add_command(processors.processor_cli)
    app.cli.add_command(users.user_cli)
    for module in (
        worker,
        records,
        payments,
        events,
        intents,
        jobs,
        reconcile,
        forms,
        imports,
        audit,
        tokens,
        webhook_endpoints,
        connect,
        notifications,
        cleanup,
    ):
        module.register(app)
