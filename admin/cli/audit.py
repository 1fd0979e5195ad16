"""``audit list``: the audit log, with the /audit page's filter."""

from __future__ import annotations

from itertools import islice

from flask import Flask

from admin.cli.support import (
    PaydeskGroup,
    emit,
    filter_from_options,
    filter_options,
    format_option,
    limit_option,
)
from admin.listing import walk
from admin.models import AuditLog
from admin.services.core.audit import AuditFilter, audit_query

audit_cli = PaydeskGroup("audit", help="The audit log: who changed what, when, with Stripe's request id.")


@audit_cli.command("list")
@filter_options(AuditFilter)
@limit_option
@format_option
def audit_list(limit, fmt, **options):
    """Audit entries, newest first: the same filter as /audit."""
    flt = filter_from_options(AuditFilter, **options)
    rows = (a for chunk in walk(audit_query(flt), [AuditLog.id], flt, scalars=True, chunk=min(limit, 1000))
            for a in chunk)
    emit([{"id": a.id, "at": a.at, "actor": a.actor, "action": a.action, "object_type": a.object_type,
           "object_id": a.object_id, "processor_id": a.processor_id, "result": a.result, "message": a.message,
           "stripe_request_id": a.stripe_request_id, "parameters": a.parameters}
          for a in islice(rows, limit)], fmt,
         ["id", "at", "actor", "action", "object_type", "object_id", "result", "stripe_request_id", "message"])


def register(app: Flask) -> None:
    app.cli.add_command(audit_cli)
