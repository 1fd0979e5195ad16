"""admin/services/monitoring/multiproc.py: the files of processes that have exited are folded into one archive
per metric type, and the totals /metrics reports do not move."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from prometheus_client import generate_latest

from admin.services.monitoring import multiproc

from .helpers import value

CHILD = textwrap.dedent("""
    import sys
    from prometheus_client import Counter, Gauge, Histogram
    c = Counter("t_requests", "requests", ["result"])
    h = Histogram("t_seconds", "seconds", buckets=(1, 5))
    g = Gauge("t_busy", "busy", multiprocess_mode="livesum")
    n = int(sys.argv[1])
    c.labels("ok").inc(n)
    h.observe(0.5)
    h.observe(3)
    g.set(1)
""")


def _child(path, n: int) -> None:
    subprocess.run(
        [sys.executable, "-c", CHILD, str(n)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)},
        check=True,
    )


def _scrape(path, monkeypatch) -> str:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return generate_latest(multiproc.collector_registry()).decode()


def test_dead_processes_files_fold_into_the_archive_and_totals_stay(tmp_path, monkeypatch):
    _child(tmp_path, 3)
    _child(tmp_path, 4)
    before = _scrape(tmp_path, monkeypatch)
    assert value(before, "t_requests_total", result="ok") == 7
    assert (
        len(list(tmp_path.glob("counter_*.db"))) == 2 and len(list(tmp_path.glob("gauge_livesum_*.db"))) == 2
    )

    assert multiproc.tidy(str(tmp_path)) == 6  # 2 counters, 2 histograms, 2 gauges
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
    after = _scrape(tmp_path, monkeypatch)
    assert value(after, "t_requests_total", result="ok") == 7
    assert value(after, "t_seconds_count") == 4 and value(after, "t_seconds_sum") == 7
    assert value(after, "t_seconds_bucket", le="1.0") == 2
    assert value(after, "t_busy") == 0  # a gauge of a process that has gone says nothing

    _child(tmp_path, 5)  # the next one adds to the archive
    multiproc.tidy(str(tmp_path))
    assert value(_scrape(tmp_path, monkeypatch), "t_requests_total", result="ok") == 12
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]


def test_live_processes_files_are_left_alone(tmp_path):
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"")
    assert multiproc.tidy(str(tmp_path)) == 0
    assert (tmp_path / f"counter_{os.getpid()}.db").exists()
