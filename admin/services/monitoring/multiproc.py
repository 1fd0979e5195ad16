"""Prometheus metrics shared by several processes (gunicorn workers, worker processes) on one host.

prometheus-client's multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` set before it is imported, each
process writes its counters and histograms to files ``<type>_<pid>.db`` in that directory, and ``/metrics``
(in whichever process answers) adds them all up. This module imports nothing of paydesk, so the gunicorn
master (``gunicorn.conf.py``) can use it without loading the app.

Tidying: a process that has exited leaves its files behind (its counts must not vanish, or every counter
would appear to go back to zero). :func:`tidy` adds a dead process's counters and histograms into one
``<type>_archive.db`` per type and deletes its files, so the directory holds one file per live process plus
the archives however often workers are restarted; its gauges are dropped. Tidying and scraping take a lock
on the directory (exclusive and shared), so a scrape never sees a dead process's counts twice or not at all.
"""

from __future__ import annotations

import fcntl
import glob
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ENV = "PROMETHEUS_MULTIPROC_DIR"
ARCHIVE = "archive"
ADDITIVE = ("counter", "histogram", "summary")  # a dead process's values add into the archive
LOCK_NAME = ".paydesk-metrics.lock"


def directory() -> str | None:
    """The multiprocess directory when multiprocess mode is on, else None."""
    path = os.environ.get(ENV)
    return path if path and os.path.isdir(path) else None


@contextmanager
def locked(path: str, *, shared: bool) -> Iterator[None]:
    """Hold the directory's lock: shared while reading the files, exclusive while tidying them."""
    fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _parse(filename: str) -> tuple[str, str] | None:
    """(type, pid) of a metrics file ``counter_123.db`` / ``gauge_livesum_123.db``; None for anything else."""
    name = os.path.basename(filename)
    if not name.endswith(".db"):
        return None
    parts = name[:-3].split("_")
    return (parts[0], parts[-1]) if len(parts) >= 2 else None


def tidy(path: str | None = None, *, alive: Callable[[int], bool] = pid_alive) -> int:
    """Fold the files of processes that are no longer running into the archives; how many files went."""
    from prometheus_client.mmap_dict import MmapedDict

    path = path or directory()
    if not path:
        return 0
    removed = 0
    with locked(path, shared=False):
        dead: dict[str, list[str]] = defaultdict(list)
        for f in glob.glob(os.path.join(path, "*.db")):
            parsed = _parse(f)
            if parsed is None or not parsed[1].isdigit() or alive(int(parsed[1])):
                continue
            if parsed[0] in ADDITIVE:
                dead[parsed[0]].append(f)
            else:  # a gauge says how things are in a process; a dead one's say nothing
                os.remove(f)
                removed += 1
        for typ, files in dead.items():
            archive = os.path.join(path, f"{typ}_{ARCHIVE}.db")
            totals: dict[str, float] = defaultdict(float)
            for f in ([archive] if os.path.exists(archive) else []) + files:
                for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(f):
                    totals[key] += value
            fd, tmp = tempfile.mkstemp(prefix=f".{typ}_", suffix=".tmp", dir=path)
            os.close(fd)
            os.remove(tmp)  # MmapedDict makes the file itself
            out = MmapedDict(tmp)
            try:
                for key, value in totals.items():
                    out.write_value(key, value, 0.0)
            finally:
                out.close()
            os.replace(tmp, archive)
            for f in files:
                os.remove(f)
                removed += 1
    return removed


def collector_registry():
    """A registry that reads every process's files (under the shared lock): what ``/metrics`` serves."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    path = directory()

    class Locked(MultiProcessCollector):
        def collect(self):
            with locked(path, shared=True):
                return list(super().collect())

    registry = CollectorRegistry()
    Locked(registry, path=path)
    return registry
