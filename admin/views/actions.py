"""What every row action, bulk action and job start answers, so all list pages behave alike.

- a row action swaps its partial (the row or the status block) and says what happened;
  without JavaScript it flashes the message and goes back to the page;
- a bulk action carries either the ticked ids (``ids``) or "everything matching this
  filter" (``all=1`` plus the filter's criteria as JSON in ``criteria``);
- starting a job answers its progress partial (polled until it ends), or redirects to
  the job's page without JavaScript.
"""

from __future__ import annotations

import json
from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user

from admin.dbutil import parse_id
from admin.errors import ServiceError
from admin.htmx import is_htmx
from admin.services.core import jobs as jobs_service


def sentence(message: str) -> str:
    """A message as a sentence: its first word capitalised, unless that word is a name that is not (an id such
    as ``ch_1Abc``, ``paydesk``). Services' messages are written for the CLI's "Error: ..." too."""
    word = message.split(" ", 1)[0].rstrip(":,;")
    if word.isalpha() and word.islower() and word != "paydesk":
        return message[0].upper() + message[1:]
    return message


def action_response(
    partial: str,
    back_url: str,
    message: str,
    tone: str = "success",
    status: int | None = None,
    **context: Any,
):
    message = sentence(message)
    if is_htmx():
        code = status or (200 if tone == "success" else 422)
        return render_template(partial, message=message, tone=tone, **context), code
    flash(message, tone)
    return redirect(back_url)


def labelled(err: ServiceError, labels: dict[str, str]) -> str:
    """A service's message for the web: prefixed with the label of the field it is about (as the form shows
    it), where the service named the field and the message does not already start with the label."""
    label = labels.get(err.field or "")
    if label and not err.message.startswith(label):
        return f"{label}: {err.message}"
    return err.message


def bulk_selection(form) -> dict[str, Any] | None:
    """``{"ids": [...]}`` or ``{"filter": {...}}`` from a bulk form; None when nothing is chosen."""
    if form.get("all") == "1":
        try:
            criteria = json.loads(form.get("criteria") or "{}")
        except ValueError:
            criteria = None
        if not isinstance(criteria, dict):
            raise ServiceError("the filter for this bulk action is damaged; reload the page")
        return {"filter": criteria}
    ids = sorted({pk for i in form.getlist("ids") if (pk := parse_id(i)) is not None}, reverse=True)
    return {"ids": ids} if ids else None


def require_role(kind: str) -> None:
    """403 unless the signed-in user's role may start the job kind ``kind``."""
    role = jobs_service.kind(kind).role
    if not current_user.can(role):
        abort(403, description=f"This needs the {role} role; you are signed in as {current_user.role}.")


def started_response(started: jobs_service.Started):
    """A started (or rejoined) job: its progress partial (polled until it ends), or its page without JavaScript."""
    job = started.job
    message = None if started.created else f"The same job was already {job.status}; this is it."
    if is_htmx():
        return render_template("jobs/_progress.html", job=job, message=message), 202
    flash(message or f"Started: {job.title}", "info")
    return redirect(url_for("jobs.show", job_id=job.id))


def start_job_response(kind: str, params: Any, processor_id: int | None = None):
    """Start (or rejoin) a job, if the signed-in user's role allows that kind of job."""
    require_role(kind)
    return started_response(jobs_service.start(kind, params, processor_id=processor_id))
