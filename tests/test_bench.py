"""The benchmarks run as shipped (a smoke run each, small numbers; their figures are not judged here)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.localstripe
def test_imports_bench_runs_and_reads_nothing_again_for_unchanged_subscriptions():
    """It used to stop at once: its in-process app had no ENCRYPTION_KEY for the processor's stored secrets."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "imports.py"),
            "--customers",
            "20",
            "--subscriptions",
            "2",
            "--backends",
            "sqlite",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout + done.stderr
    assert "Traceback" not in out and "cannot be decrypted" not in out, out
    assert "PASS  sqlite: importing subscriptions again wrote nothing" in done.stdout, out
    assert (
        "PASS  sqlite: importing 2 unchanged subscriptions again: 3 Stripe calls (at most 3), 0 balance "
        "transactions read again" in done.stdout
    ), out


def test_list_pages_bench_runs_every_list_and_its_csv():
    """A tiny run of bench/list_pages.py on SQLite: every list page served by gunicorn answers, first, deep and
    filtered, and every CSV export streams (the figures are not judged here)."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "list_pages.py"),
            "--scale",
            "0.002",
            "--backends",
            "sqlite",
            "--requests",
            "4",
            "--deep-pages",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    for page in (
        "events",
        "subscriptions",
        "customers",
        "contributions",
        "payments",
        "intents",
        "jobs",
        "outbox",
        "audit",
    ):
        assert f"| {page} | first page |" in done.stdout, out
        assert f"| {page} | CSV, first bytes |" in done.stdout, out
    assert "(no CSV export)" not in done.stdout


def test_list_statements_bench_times_and_explains_each_statement_of_the_filtered_views():
    """A tiny run of bench/list_statements.py on SQLite: every filtered view's statements are timed, each with its
    plan (the figures are not judged here)."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "list_statements.py"),
            "--scale",
            "0.002",
            "--backends",
            "sqlite",
            "--repeat",
            "1",
            "--plans",
            "--plan-ms",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in out and "no plan:" not in out, out
    for view in ("events ppid status=error", "payments ppid kind=refund", "intents ppid status=incomplete"):
        assert f"\n{view}: " in done.stdout, out
    assert "USING COVERING INDEX ix_stripe_event_processor_status_created_id" in done.stdout, out
