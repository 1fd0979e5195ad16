"""The test suite itself: a test that never ends fails (pytest-timeout) instead of stalling CI."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from conftest import ROOT


def test_every_test_has_a_default_timeout():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 60 <= int(options["timeout"]) <= 900  # long enough for the browser tests, short enough for CI


def test_a_test_that_loops_forever_fails(tmp_path):
    (tmp_path / "test_forever.py").write_text("def test_forever():\n    while True:\n        pass\n")
    # The project's own configuration (its plugins and options), with a short timeout for this check.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            "-o",
            "timeout=2",
            "-q",
            str(tmp_path / "test_forever.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Timeout" in done.stdout and "1 failed" in done.stdout, done.stdout
