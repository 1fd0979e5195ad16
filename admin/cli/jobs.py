"""Jobs from the command line: the same job code as the worker runs, in the foreground with a
progress bar (``run_job``), and ``jobs list|show|cancel|resume``."""

from __future__ import annotations

import json
import sys
import time

import click
from flask import Flask

from admin.cli.support import (
    PaydeskGroup,
    emit,
    end_open_line,
    fail,
    filter_from_options,
    filter_options,
    format_option,
    line_left_open,
)
from admin.dbutil import parse_id
from admin.errors import ServiceError
from admin.models.jobs import JOB_DONE, JOB_PAUSED, JOB_RUNNING, Job
from admin.services.core import jobs as jobs_service
from admin.services.core.jobs import job_dict
from admin.timeutil import utcnow
from admin.webhooks.pipeline import worker_name
from admin.worker import queues

jobs_cli = PaydeskGroup("jobs", help="Background jobs: bulk replays, populate, cleanup, imports, ...")


class _Progress:
    """A progress bar on stderr (so ``--format json`` output stays clean on stdout)."""

    def __init__(self, job: Job, quiet: bool):
        self.quiet = quiet
        self.last = 0.0
        self.title = job.title

    def __call__(self, job: Job) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if now - self.last < 0.2 and not (job.total and job.done >= job.total):
            return
        self.last = now
        if job.total:
            width = 30
            filled = int(width * min(job.done, job.total) / job.total)
            bar = "#" * filled + "-" * (width - filled)
            click.echo(
                f"\r{self.title[:50]}  [{bar}] {job.done}/{job.total} {job.percent:3d}%", nl=False, err=True
            )
        else:
            click.echo(f"\r{self.title[:50]}  {job.done} done", nl=False, err=True)
        line_left_open()  # a log line or a message now starts on a line of its own

    def end(self) -> None:
        end_open_line()


RETRYING = "retrying: "  # a job's error while it waits to try again after a passing failure


def _run_here(job: Job, worker: str, progress: _Progress) -> str:
    """Run ``job`` here to its end. A passing failure (Stripe or the database unavailable for now) is tried
    again when it falls due, as the worker would, until the job's own retry budget ends it; Ctrl-C pauses."""
    status = queues.run_foreground(job, worker, on_progress=progress)
    while status == JOB_RUNNING:
        job = jobs_service.get(job.id)
        if not (job.error or "").startswith(RETRYING):
            break  # another runner took it over
        wait = max(0.0, (job.locked_until - utcnow()).total_seconds()) if job.locked_until else 0.0
        progress.end()
        click.echo(
            f"{(job.error or '')[len(RETRYING) :]}\n  Failed for now: trying again in {wait:.0f} s (Ctrl-C pauses "
            f"the job).",
            err=True,
        )
        try:
            time.sleep(wait)
        except KeyboardInterrupt:
            jobs_service.pause(job)
            return JOB_PAUSED
        status = queues.run_foreground(job, worker, on_progress=progress)
    return status


def run_job(
    kind: str,
    params: dict,
    *,
    processor_id: int | None = None,
    fmt: str = "table",
    quiet: bool = False,
    leave_to_runner: bool = False,
    print_result: bool = True,
) -> Job:
    """Start (or rejoin) a job and run it here to its end, with a progress bar; prints its result (unless
    ``print_result`` is False and it is done: the command prints what the job made, e.g. a kept scan).
    Exits non-zero when it failed; Ctrl-C pauses it (``jobs resume ID`` continues).

    ``leave_to_runner``: when an identical job is already being run elsewhere (another cron host, the
    worker), say so and exit 0 instead of failing: the work is being done."""
    started = None
    try:
        started = jobs_service.start(kind, params, processor_id=processor_id)
        job = started.job
        if not started.created:
            click.echo(f"An identical job is already {job.status}: job {job.id}; continuing it.", err=True)
        progress = _Progress(job, quiet)
        status = _run_here(job, f"cli:{worker_name()}", progress)
        progress.end()
    except ServiceError as err:
        if leave_to_runner and started is not None and not started.created:
            click.echo(
                f"job {started.job.id} ({started.job.title}) is being run elsewhere; nothing to do here.",
                err=True,
            )
            return started.job
        fail(err)
    job = jobs_service.get(job.id)
    if print_result or status != JOB_DONE:
        print_job(job, fmt)
    if status == JOB_PAUSED:
        click.echo(f"Paused. Continue with: flask --app wsgi jobs resume {job.id}", err=True)
        sys.exit(130)
    if status != JOB_DONE:
        sys.exit(1)
    return job


def print_job(job: Job, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(job_dict(job), indent=2, default=str))
        return
    counts = (job.result or {}).get("counts") or {}
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    if not summary and job.status == JOB_DONE:
        summary = "nothing to do"
    click.echo(f"job {job.id} {job.status}: {job.title}" + (f": {summary}" if summary else ""))
    for message in (job.result or {}).get("messages") or []:
        click.echo(f"  {message}")
    if job.error:
        error = job.error
        if error.startswith(RETRYING):
            error = f"{error[len(RETRYING) :]} (failed for now; it is tried again)"
        click.echo(f"  error: {error}")


@jobs_cli.command("list")
@filter_options(jobs_service.JobFilter)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@format_option
def jobs_list(limit, fmt, **options):
    """Recent jobs, newest first: the same filter as /jobs."""
    flt = filter_from_options(jobs_service.JobFilter, **options)
    emit(
        list(jobs_service.job_rows(flt, limit)),
        fmt,
        ["id", "kind", "status", "done", "total", "actor", "created_at", "title"],
    )


def _job_arg(job_id: str) -> Job:
    pk = parse_id(job_id)
    if pk is None:
        fail(ServiceError(f"{job_id[:40]!r} is not a job id (a number from `jobs list`)"))
    try:
        return jobs_service.get(pk)
    except ServiceError as err:
        fail(err)
        raise  # unreachable


@jobs_cli.command("show")
@click.argument("job_id")
@format_option
def jobs_show(job_id, fmt):
    """One job: its progress, result and error."""
    print_job(_job_arg(job_id), fmt)


@jobs_cli.command("cancel")
@click.argument("job_id")
def jobs_cancel(job_id):
    """Ask a job to stop (it stops after the unit it is doing)."""
    try:
        job = jobs_service.cancel(_job_arg(job_id))
    except ServiceError as err:
        fail(err)
    click.echo(f"job {job.id}: {'cancelled' if job.status == 'cancelled' else 'cancel requested'}")


@jobs_cli.command("resume")
@click.argument("job_id")
@format_option
def jobs_resume(job_id, fmt):
    """Continue a paused or failed job from where it stopped, here in the foreground."""
    job = _job_arg(job_id)
    try:
        if job.status != "running":
            jobs_service.resume(job)
        progress = _Progress(job, False)
        status = _run_here(job, f"cli:{worker_name()}", progress)
        progress.end()
    except ServiceError as err:
        fail(err)
    print_job(jobs_service.get(job.id), fmt)
    if status != JOB_DONE:
        sys.exit(1)


def register(app: Flask) -> None:
    app.cli.add_command(jobs_cli)
