"""The benchmarks run as shipped (a smoke run each, small numbers; their figures are not judged here)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.localstripe
def test_imports_bench_runs_and_reads_nothing_again_for_unchanged_subscriptions():
    """It used to stop at once: its in-process app had no ENCRYPTION_KEY for the processor's stored secrets."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "imports.py"), "--customers", "20",
                           "--subscriptions", "2", "--backends", "sqlite"], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    out = done.stdout + done.stderr
    assert "Traceback" not in out and "cannot be decrypted" not in out, out
    assert "PASS  sqlite: importing subscriptions again wrote nothing" in done.stdout, out
    assert "PASS  sqlite: importing 2 unchanged subscriptions again: 3 Stripe calls (at most 3), 0 balance " \
           "transactions read again" in done.stdout, out
