"""``audit list``: the audit log, with the /audit page's filter."""

from __future__ import annotations

from flask import Flask

from admin.cli.support import (
    PaydeskGroup,
    emit,
    filter_from_options,
    filter_options,
    format_option,
    limit_option,
)
from admin.services.core.audit import AuditFilter, audit_rows

audit_cli = PaydeskGroup("audit", help="The audit log: who changed what, when, with Stripe's request id.")


@audit_cli.command("list")
@filter_options(AuditFilter)
@limit_option
@format_option
def audit_list(limit, fmt, **options):
    """Audit entries, newest first: the same filter as /audit."""
    flt = filter_from_options(AuditFilter, **options)
    emit(
        list(audit_rows(flt, limit)),
        fmt,
        ["id", "at", "actor", "action", "object_type", "object_id", "result", "stripe_request_id", "message"],
    )


def register(app: Flask) -> None:
    app.cli.add_command(audit_cli)
