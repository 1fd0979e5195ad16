"""``worker --processes N`` supervises its children: a dead one is reaped and replaced, a crash loop backs off."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import ROOT

from admin.worker.supervisor import restart_pause

SUPERVISOR = textwrap.dedent("""
    import logging, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pathlib import Path
    from conftest import make_app
    from admin.worker.supervisor import run_processes
    app = make_app({url!r}, Path({tmp!r}), WORKER_IDLE_SLEEP=0.05, WORKER_RESTART_BACKOFF_MAX=0.4)

    def crash(app, concurrency):
        sys.exit(3)

    run_processes(app, {processes}, 1, target=crash if {crash!r} else None)
""")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


def gone(pid: int) -> bool:
    """Not even a zombie: the process table has no entry for it."""
    return not Path(f"/proc/{pid}").exists()


def wait_until(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def start_supervisor(app, tmp_path: Path, processes: int, crash: bool = False):
    script = SUPERVISOR.format(
        root=str(ROOT),
        tests=str(ROOT / "tests"),
        url=app.config["DATABASE_URL"],
        tmp=str(tmp_path),
        processes=processes,
        crash=crash,
    )
    log = tmp_path / "supervisor.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )
    return proc, log


def stop_supervisor(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_killed_worker_process_is_reaped_and_replaced(app, tmp_path):
    proc, log = start_supervisor(app, tmp_path, processes=2)
    try:
        assert wait_until(lambda: len(children(proc.pid)) == 2), log.read_text()
        first = children(proc.pid)
        victim = first[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: gone(victim) and len(children(proc.pid)) == 2), log.read_text()
        now = children(proc.pid)
        assert victim not in now and first[1] in now  # the other child was left alone
        assert wait_until(lambda: "restarted" in log.read_text())
        text = log.read_text()
        assert re.search(
            rf"worker process paydesk-worker-p\d \(pid {victim}\) was killed by SIGKILL after "
            r"[\d.]+ s; starting a new one\n",
            text,
        ), text
    finally:
        code = stop_supervisor(proc)
    assert code == 0, log.read_text()
    assert all(gone(pid) for pid in now), "a child outlived its supervisor"
    assert "Traceback" not in log.read_text()


def test_worker_processes_that_keep_dying_are_restarted_with_a_growing_pause(app, tmp_path):
    proc, log = start_supervisor(app, tmp_path, processes=1, crash=True)
    try:
        assert wait_until(lambda: log.read_text().count("quick exits in a row") >= 3), log.read_text()
    finally:
        code = stop_supervisor(proc)
    assert code == 0
    text = log.read_text()
    assert "exited with status 3" in text
    pauses = [
        float(p) for p in re.findall(r"starting a new one in ([\d.]+) s \(\d+ quick exits in a row\)", text)
    ]
    assert pauses[:3] == [0.4, 0.4, 0.4]  # 1 s, 2 s, ... capped here at WORKER_RESTART_BACKOFF_MAX
    assert text.count("restarted (pid") < 20  # not a busy loop of restarts


def test_restart_pause_doubles_while_processes_keep_dying():
    assert [restart_pause(n, 60) for n in range(1, 10)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
