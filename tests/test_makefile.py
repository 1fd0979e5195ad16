"""``make bench`` and ``make clean``, run on a copy of the Makefile in a scratch directory (so the real
.venv and instance folder are never touched)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def project(tmp_path):
    """The Makefile with an installed-looking .venv whose python is this one."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("pyproject.toml", "requirements-dev.lock", "requirements.lock"):
        (tmp_path / name).write_text("")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    os.symlink(sys.executable, tmp_path / ".venv" / "bin" / "python")
    stamp = tmp_path / ".venv" / ".installed"
    stamp.write_text("")
    later = time.time() + 5  # newer than pyproject.toml: nothing is installed
    os.utime(stamp, (later, later))
    return tmp_path


def _make(project, target):
    return subprocess.run(
        ["make", "--no-print-directory", target], cwd=project, capture_output=True, text=True, timeout=60
    )


def test_bench_runs_every_benchmark_and_lists_every_shortfall_at_the_end(project):
    bench = project / "bench"
    bench.mkdir()
    (bench / "a_slow.py").write_text("print('  FAIL  a: 12 ev/s (target >= 50)'); raise SystemExit(1)\n")
    (bench / "b_fine.py").write_text("print('  PASS  b: all good'); open('b.ran', 'w').close()\n")
    (bench / "c_crash.py").write_text("raise SystemExit(3)\n")
    (bench / "d_slow.py").write_text(
        "print('  PASS  d: one fine'); print('  FAIL  d: p99 80 ms (target < 50)'); raise SystemExit(1)\n"
    )
    done = _make(project, "bench")
    assert done.returncode != 0, done.stdout + done.stderr
    assert (project / "b.ran").exists()  # run after a_slow.py missed its target
    out = done.stdout
    for name in ("a_slow", "b_fine", "c_crash", "d_slow"):
        assert f"==> bench/{name}.py" in out
    summary = out[out.index("3 of 4 benchmarks missed a target") :]
    assert "FAIL  a: 12 ev/s (target >= 50)" in summary and "FAIL  d: p99 80 ms (target < 50)" in summary
    assert "bench/c_crash.py (exit status 3)" in summary and "PASS" not in summary and "b_fine" not in summary


def test_bench_passes_when_every_target_is_met(project):
    (project / "bench").mkdir()
    (project / "bench" / "fine.py").write_text("print('  PASS  fine')\n")
    done = _make(project, "bench")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 1 benchmarks met their targets" in done.stdout


def test_clean_removes_build_and_the_outbox_but_keeps_the_database_and_keys(project):
    for folder in ("build/lib/admin", "instance/outbox", "instance/demo-logs"):
        (project / folder).mkdir(parents=True)
    for name in (
        "build/lib/admin/x.py",
        "instance/outbox/receipt.eml",
        "instance/demo.sqlite3",
        "instance/paydesk.sqlite3",
        "instance/secret_key",
        "instance/encryption_key",
    ):
        (project / name).write_text("x")
    done = _make(project, "clean")
    assert done.returncode == 0, done.stdout + done.stderr
    for gone in ("build", "instance/outbox", "instance/demo.sqlite3", "instance/demo-logs", ".venv"):
        assert not (project / gone).exists(), gone
    for kept in ("instance/paydesk.sqlite3", "instance/secret_key", "instance/encryption_key"):
        assert (project / kept).exists(), kept


def test_lint_fails_on_a_type_error_in_admin_and_says_what_to_run(project):
    pytest.importorskip("mypy", reason="mypy is not installed in this venv (make install puts it there)")
    bin_dir = project / ".venv" / "bin"
    # this venv's own python (a symlink to it outside the venv would not see the venv's packages) and ruff
    (bin_dir / "python").unlink()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    os.symlink(os.path.join(os.path.dirname(sys.executable), "ruff"), bin_dir / "ruff")
    (project / "pyproject.toml").write_text('[tool.mypy]\npython_version = "3.11"\nfiles = ["admin"]\n')
    (project / "admin").mkdir()
    module = project / "admin" / "__init__.py"
    module.write_text('def cents(amount: int) -> int:\n    return amount\n\n\ncents("12.50")\n')
    done = _make(project, "lint")
    assert done.returncode != 0, done.stdout + done.stderr
    assert 'admin/__init__.py:5: error: Argument 1 to "cents" has incompatible type "str"' in done.stdout
    assert "check again with `.venv/bin/python -m mypy`" in done.stderr
    module.write_text("def cents(amount: int) -> int:\n    return amount\n\n\ncents(1250)\n")
    done = _make(project, "lint")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found in 1 source file" in done.stdout
