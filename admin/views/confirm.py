"""The confirmation step of a tool that starts a job over many objects ("push to all", "update all",
"compare all"): the patterns' "confirm with a count, then a job". The tool's form posts without
``step``; the answer says how many and what will happen, and its button posts again with
``step=run``, which starts the job. htmx swaps the confirmation into the tool's result box; a browser
without JavaScript gets it as a page of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import render_template

from admin.htmx import is_htmx


@dataclass
class JobConfirmation:
    title: str  # the question, with the count: "Push contact details to 12 linked Stripe customers?"
    detail: str  # what the job does
    confirm: str  # the button: "Yes, push to 12"
    action: str  # where the button posts (the tool's own URL)
    back: str  # the page the tool is on
    back_label: str
    fields: dict[str, str] = field(default_factory=dict)  # posted again with step=run (the processor, ...)
    nothing: str | None = None  # said instead of a button when there is nothing to do
    target: str = "#tool-result"


def confirmation(c: JobConfirmation):
    return render_template("_job_confirm.html" if is_htmx() else "job_confirm.html", c=c)
