"""``/jobs``: every background job with its progress; cancel and resume. ``/jobs/outbox``: side
effects (receipts, Stripe metadata pushes) that failed, with a retry button."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for
from flask_login import current_user

from admin.errors import ServiceError
from admin.htmx import is_partial
from admin.listing import page_or_first
from admin.models import OutboxTask
from admin.models.jobs import JOB_STATUSES
from admin.security import role_required
from admin.services.core import jobs as jobs_service
from admin.services.core import outbox
from admin.views.actions import action_response
from admin.views.export import filter_csv

bp = Blueprint("jobs", __name__)


@bp.get("/jobs")
@role_required("viewer")
def index():
    flt, errors = jobs_service.JobFilter.from_args(request.args)
    page = page_or_first(jobs_service.job_page, flt, errors)
    template = "jobs/_results.html" if is_partial() else "jobs/index.html"
    return render_template(
        template,
        flt=flt,
        errors=errors,
        page=page,
        kinds=jobs_service.kind_names(),
        statuses=JOB_STATUSES,
        failed_tasks=outbox.count_failed(),
        counts=jobs_service.job_status_counts(flt),
    )


JOB_CSV = (
    "id",
    "kind",
    "title",
    "status",
    "done",
    "total",
    "actor",
    "params",
    "result",
    "error",
    "created_at",
    "finished_at",
)
TASK_CSV = (
    "id",
    "kind",
    "key",
    "status",
    "attempts",
    "last_error",
    "event_row_id",
    "processor_id",
    "created_at",
    "done_at",
)


@bp.get("/jobs/export.csv")
@role_required("viewer")
def export():
    flt, _ = jobs_service.JobFilter.from_args(request.args)
    return filter_csv("jobs", JOB_CSV, jobs_service.job_rows(flt), money=())


def _job_or_404(job_id: int):
    try:
        return jobs_service.get(job_id)
    except ServiceError:
        abort(404)


@bp.get("/jobs/<id:job_id>")
@role_required("viewer")
def show(job_id: int):
    return render_template("jobs/show.html", job=_job_or_404(job_id))


@bp.get("/jobs/<id:job_id>/progress")
@role_required("viewer")
def progress(job_id: int):
    return render_template("jobs/_progress.html", job=_job_or_404(job_id))


def _may_act(job) -> None:
    role = jobs_service.kind(job.kind).role
    if not current_user.can(role):
        abort(403, description=f"This job needs the {role} role; you are signed in as {current_user.role}.")


@bp.post("/jobs/<id:job_id>/cancel")
@role_required("operator")
def cancel(job_id: int):
    job = _job_or_404(job_id)
    _may_act(job)
    try:
        jobs_service.cancel(job)
        message, tone = (
            ("Cancelled." if job.status == "cancelled" else "Stopping after the current step."),
            "success",
        )
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response(
        "jobs/_progress.html", url_for("jobs.show", job_id=job.id), message, tone, job=job, status=200
    )


@bp.post("/jobs/<id:job_id>/resume")
@role_required("operator")
def resume(job_id: int):
    job = _job_or_404(job_id)
    _may_act(job)
    try:
        jobs_service.resume(job)
        message, tone = "Queued again; it continues where it stopped.", "success"
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response(
        "jobs/_progress.html", url_for("jobs.show", job_id=job.id), message, tone, job=job, status=200
    )


@bp.get("/jobs/outbox")
@role_required("viewer")
def tasks():
    flt, errors = outbox.TaskFilter.from_args(request.args)
    page = page_or_first(outbox.task_page, flt, errors)
    template = "outbox/_results.html" if is_partial() else "outbox/index.html"
    return render_template(template, flt=flt, errors=errors, page=page, counts=outbox.task_status_counts(flt))


@bp.get("/jobs/outbox/export.csv")
@role_required("viewer")
def tasks_export():
    flt, _ = outbox.TaskFilter.from_args(request.args)
    return filter_csv("outbox", TASK_CSV, outbox.task_rows(flt), money=())


@bp.post("/jobs/outbox/<id:task_id>/retry")
@role_required("operator")
def retry_task(task_id: int):
    task: OutboxTask | None
    try:
        task = outbox.retry(task_id)
        message, tone = "Queued again: the worker runs it within seconds.", "success"
    except ServiceError as err:
        task, message, tone = outbox.find(task_id), err.message, "error"
    if task is None:
        abort(404)
    return action_response("outbox/_row.html", url_for("jobs.tasks"), message, tone, task=task, status=200)
