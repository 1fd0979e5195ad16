"""Metrics and JSON logs as production runs them: gunicorn with 2 worker processes (gunicorn.conf.py) and a
``flask worker`` process, all writing to one PROMETHEUS_MULTIPROC_DIR.

- /metrics adds up every process's counts, whichever process answers the scrape;
- a gunicorn worker killed with SIGKILL is replaced and its counts survive (folded into the archive);
- with PAYDESK_LOG_FORMAT=json every line on stderr is JSON, one per request and per processed event, with
  request id, event id and processor, and none carries a secret, a card number, a donor email or a body.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import stripe_objects as so
from conftest import ROOT, WEBHOOK_SECRET
from prometheus_client.mmap_dict import MmapedDict
from stripe_objects import signed
from test_serving import served

from .helpers import value

DONOR_EMAIL = "ada.lovelace@example.org"
CARD = "4242424242424242"
NAME = "paydesk_webhook_deliveries_total"


def _accepted_by_pid(metrics_dir: Path) -> Counter:
    out: Counter = Counter()
    for f in metrics_dir.glob("counter_*.db"):
        pid = f.stem.split("_")[-1]
        for key, val, _ts, _pos in MmapedDict.read_all_values_from_file(str(f)):
            if '"accepted"' in key and "webhook_deliveries" in key:
                out[pid] += val
    return out


def _event() -> dict:
    customer = so.customer(email=DONOR_EMAIL, name="Ada Lovelace", metadata={"note": f"card {CARD}"})
    return so.event("issuing_card.created", customer)  # no handler: ignored by the worker, no Stripe call


@pytest.mark.timeout(240)
def test_two_gunicorn_workers_and_a_worker_process_add_up_and_log_json(
    app, offline_processor, tmp_path, monkeypatch
):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    url_path = f"/webhooks/stripe/{offline_processor.id}"
    sent = 0
    with served(app, tmp_path, "metrics", LOG_FORMAT="json", METRICS_TOKEN="scrape-token") as base:

        def deliver(_):
            body, headers = signed(_event(), WEBHOOK_SECRET)
            return requests.post(f"{base}{url_path}", data=body, headers=headers, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            for _ in range(15):  # until both server processes have answered some
                codes = list(pool.map(deliver, range(16)))
                assert codes == [200] * 16
                sent += 16
                if len([p for p, n in _accepted_by_pid(metrics_dir).items() if n]) >= 2:
                    break
        by_pid = _accepted_by_pid(metrics_dir)
        assert len([p for p, n in by_pid.items() if n]) == 2, f"one process answered everything: {by_pid}"
        assert sum(by_pid.values()) == sent

        def total() -> float:
            texts = [
                requests.get(f"{base}/metrics", timeout=10).text for _ in range(6)
            ]  # either process answers
            values = {value(t, NAME, result="accepted") for t in texts}
            assert len(values) == 1, values
            return values.pop()

        assert total() == sent
        # from outside the internal network: the bearer token, and nothing without it
        outside = {"X-Forwarded-For": "203.0.113.9"}
        assert requests.get(f"{base}/metrics", headers=outside, timeout=10).status_code == 401
        assert (
            requests.get(
                f"{base}/metrics", headers={**outside, "Authorization": "Bearer scrape-token"}, timeout=10
            ).status_code
            == 200
        )

        # a server process killed: gunicorn starts another, the dead one's counts live on in the archive
        victim = int(next(p for p, n in by_pid.items() if n))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (metrics_dir / f"counter_{victim}.db").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (metrics_dir / f"counter_{victim}.db").exists(), "the dead worker's file was not tidied"
        assert (metrics_dir / "counter_archive.db").exists()
        assert total() == sent

        # the paydesk worker process, on the same host and directory, processes the events and exits
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
        env.update(
            PAYDESK_DATABASE_URL=app.config["DATABASE_URL"],
            PAYDESK_SECRET_KEY=app.config["SECRET_KEY"],
            PAYDESK_ENCRYPTION_KEY=app.config["ENCRYPTION_KEY"],
            PAYDESK_LOG_FORMAT="json",
        )
        worker = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--once"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert worker.returncode == 0, worker.stderr[-3000:]
        text = requests.get(f"{base}/metrics", timeout=10).text
        assert (
            value(text, "paydesk_events_processed_total", type="issuing_card.created", status="ignored")
            == sent
        )
        assert (
            value(text, "paydesk_event_handler_duration_seconds_count", type="issuing_card.created") == sent
        )
        assert value(text, "paydesk_event_queue", status="queued") == 0

    server_log = (tmp_path / "gunicorn-metrics.log").read_text()
    lines = [json.loads(line) for line in server_log.splitlines() if line.startswith("{")]
    posts = [
        line for line in lines if line.get("logger") == "paydesk.requests" and line.get("path") == url_path
    ]
    assert len(posts) == sent  # one line per request (gunicorn's own access log is off in JSON mode)
    assert all(
        p["status"] == 200
        and p["processor"] == offline_processor.id
        and p["event_id"].startswith("evt_")
        and len(p["request_id"]) == 32
        and p["duration_ms"] >= 0
        for p in posts
    )
    assert len({p["request_id"] for p in posts}) == sent
    assert not [line for line in server_log.splitlines() if line.startswith("127.0.0.1 ")], "text access log"

    events = [json.loads(line) for line in worker.stderr.splitlines() if line.startswith("{")]
    processed = [e for e in events if e["logger"] == "paydesk.events"]
    assert len(processed) == sent
    assert all(
        e["status"] == "ignored"
        and e["event_id"].startswith("evt_")
        and e["processor"] == offline_processor.id
        for e in processed
    )
    assert {e["event_id"] for e in processed} == {p["event_id"] for p in posts}

    everything = server_log + worker.stdout + worker.stderr
    for secret in (
        DONOR_EMAIL,
        CARD,
        WEBHOOK_SECRET,
        "sk_test_mocked",
        '"data"',
        "Ada Lovelace",
        "scrape-token",
    ):
        assert secret not in everything, f"{secret!r} reached the log"
