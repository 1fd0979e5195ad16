"""Jobs run in the foreground by the CLI (``admin/cli/jobs.py``): the progress bar and what is printed
around it, and a passing failure tried again rather than reported next to "nothing to do"."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

from conftest import ROOT, TEST_ENCRYPTION_KEY

from admin.cli.jobs import _Progress
from admin.cli.support import command_logging
from admin.stripe_gateway import GatewayError


def test_log_lines_never_glue_onto_the_progress_bar_and_info_is_left_out(capsys):
    handler = logging.StreamHandler(sys.stderr)  # what basicConfig gives the flask command
    level = logging.getLogger("admin").level
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        job = SimpleNamespace(title="Import all customers", total=4, done=1, percent=25)
        with command_logging():
            bar = _Progress(job, quiet=False)
            bar(job)
            logging.getLogger("admin.services.core.jobs").info("job 1 (imports.customers) done: None")
            logging.getLogger("admin.stripe_gateway").warning("stripe customers.list failed: timed out")
            job.done, job.percent = 4, 100
            bar(job)
            bar.end()
    finally:
        logging.getLogger().removeHandler(handler)
    lines = capsys.readouterr().err.split("\n")
    assert lines[0] == "\rImport all customers  [#######-----------------------] 1/4  25%"
    assert lines[1] == "WARNING admin.stripe_gateway: stripe customers.list failed: timed out"
    assert lines[2].startswith("\rImport all customers  [####") and lines[3:] == [""], lines
    assert logging.getLogger("admin").level == level  # as it was before the command


def test_a_job_with_a_progress_bar_prints_no_log_lines(app, empty_processor):
    """``flask --app wsgi import customers`` as someone runs it: the bar, then the result, nothing else."""
    from admin.services.settings.processors import gateway

    gw = gateway(empty_processor)
    for n in range(3):
        gw.create("customers", {"name": f"Donor {n}", "email": f"donor{n}@example.org"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    env.update(
        PAYDESK_DATABASE_URL=app.config["DATABASE_URL"],
        PAYDESK_SECRET_KEY="s",
        PAYDESK_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY,
    )
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "import", "customers"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    done.stdout, done.stderr = done.stdout.decode(), done.stderr.decode()  # bytes: text mode turns \r into \n
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.startswith("job ") and "done: Import all customers from Stripe: created 3" in done.stdout
    )
    assert " INFO " not in done.stderr and "admin." not in done.stderr, done.stderr
    assert done.stderr.endswith("\n") and all(
        line.startswith("\rImport all customers from Stripe  ") for line in done.stderr[:-1].split("\n")
    ), done.stderr


def test_a_passing_failure_is_tried_again_not_reported_as_nothing_to_do(
    runner, offline_processor, monkeypatch
):
    from admin.services.events import jobs as event_jobs

    calls, waits = [], []

    def sleep(seconds):  # time passes: the job falls due again
        from admin.extensions import db
        from admin.models.jobs import Job

        waits.append(seconds)
        db.session.execute(db.update(Job).values(locked_until=None))
        db.session.commit()

    def charges(processor, **_kw):
        calls.append(1)
        if len(calls) == 1:
            raise GatewayError(
                "Service unavailable", http_status=503, transient=True, operation="charges.list"
            )
        return iter(())

    monkeypatch.setattr(event_jobs, "unrecorded_charges", charges)
    monkeypatch.setattr("admin.cli.jobs.time.sleep", sleep)
    result = runner.invoke(args=["events", "retry-all"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 2 and len(waits) == 1 and 0 < waits[0] <= 5
    assert "charges.list: Service unavailable" in result.output and "trying again in 5 s" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("job ") and " done: " in last and last.endswith("nothing to do"), result.output
    assert "error" not in last and "running" not in result.output
