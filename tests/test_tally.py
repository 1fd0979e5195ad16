"""admin.tally: refusals added up and written in batches by one timer thread per process."""

from __future__ import annotations

import threading
import time
from collections import Counter

from conftest import make_app

from admin import tally as tally_module
from admin.tally import Tally


def _tally_threads() -> list[threading.Thread]:
    """The threads writing tallied batches (named paydesk-tally; before, threading.Timer's Thread-N (_flush))."""
    return [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread()
        and t.daemon
        and (t.name == "paydesk-tally" or "_flush" in t.name or isinstance(t, threading.Timer))
    ]


def test_many_apps_share_one_timer_thread_and_shutdown_writes_what_waits(tmp_path):
    """A test suite (or a process serving several apps) makes many apps: each app's tally waiting for its
    batch must not hold a thread (and its app) of its own."""
    written: list[Counter] = []
    before = len(_tally_threads())
    for n in range(8):
        app = make_app(f"sqlite:///{tmp_path / f'app{n}.sqlite3'}", tmp_path, TALLY_TEST_SECONDS=60)
        tally = Tally(
            written.append, lambda counts: f"{sum(counts.values())} more", setting="TALLY_TEST_SECONDS"
        )
        with app.app_context():
            tally.count("bad signature", "the first: written at once")
            tally.count("bad signature", "the second: waits for the batch")
            tally.count("bad signature", "the third: waits for the batch")
    assert len(_tally_threads()) <= before + 1, _tally_threads()
    assert written == [Counter({"bad signature": 1})] * 8

    tally_module.stop()  # what runs at exit
    assert written[8:] == [Counter({"bad signature": 2})] * 8
    time.sleep(0.05)
    assert len(_tally_threads()) == 0


def test_the_timer_writes_a_batch_when_it_is_due_and_then_ends(tmp_path):
    written: list[Counter] = []
    app = make_app(f"sqlite:///{tmp_path / 'app.sqlite3'}", tmp_path, TALLY_TEST_SECONDS=0.2)
    tally = Tally(written.append, lambda counts: "batch", setting="TALLY_TEST_SECONDS")
    with app.app_context():
        for _ in range(5):
            tally.count(("form", "no token"), "refused")
    assert written == [Counter({("form", "no token"): 1})]
    deadline = time.monotonic() + 5
    while len(written) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert written[1:] == [Counter({("form", "no token"): 4})]
    while tally_module.flusher.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not tally_module.flusher.running  # nothing waits: no thread is kept
