"""admin/services/monitoring/logs.py: JSON lines per request and per processed event, request ids, and masks."""

from __future__ import annotations

import io
import json
import logging

import pytest
import stripe_objects as so
from conftest import WEBHOOK_SECRET, make_app
from stripe_objects import signed
from stripe_world import Renewal

from admin.services.monitoring import logs
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_once


def test_redact_masks_emails_card_numbers_and_stripe_secrets():
    line = logs.redact(
        "donor ada@example.org paid with 4242 4242 4242 4242 (4000-0000-0000-0002) using "
        "sk_live_51AbC and whsec_XyZ123; event evt_1234567890123456 at 2026-12-07 17:00:00"
    )
    assert "ada@example.org" not in line and "4242" not in line and "0002" not in line
    assert "51AbC" not in line and "XyZ123" not in line
    assert "sk_live_[redacted]" in line and "whsec_[redacted]" in line and "[email]" in line
    assert "evt_1234567890123456" in line and "2026-12-07 17:00:00" in line  # ids and times are kept


def test_redact_masks_paydesk_api_tokens():
    line = logs.redact(
        "Authorization: Bearer pdk_Ab-c_D3fGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE; token=pdk_xyz"
    )
    assert "Ab-c_D3f" not in line and "xyz" not in line and "-_AbCdE" not in line
    assert line.count("pdk_[redacted]") == 2


@pytest.fixture
def json_lines(app):
    """Switch the app to JSON logs; the lines written, parsed."""
    stream = io.StringIO()
    app.config["LOG_FORMAT"] = "json"
    logs.configure(app)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_paydesk_json", False))
    handler.setStream(stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logging.getLogger().removeHandler(handler)
        app.config["LOG_FORMAT"] = "text"
        logs.configure(app)


def test_a_request_line_carries_the_request_id_processor_and_event_id(client, offline_processor, json_lines):
    ev = so.event("customer.updated", so.customer(email="donor@example.org"))
    body, headers = signed(ev, WEBHOOK_SECRET)
    answer = client.post(
        f"/webhooks/stripe/{offline_processor.id}?secret=1",
        data=body,
        headers={**headers, "X-Request-ID": "edge-abc.123"},
    )
    assert answer.headers["X-Request-ID"] == "edge-abc.123"  # a proxy's id is kept ...
    weird = client.get("/healthz", headers={"X-Request-ID": 'bad id {"injected": 1}'})
    assert len(weird.headers["X-Request-ID"]) == 32  # ... anything else replaced
    (line,) = [x for x in json_lines() if x["logger"] == "paydesk.requests" and x["method"] == "POST"]
    assert line["request_id"] == "edge-abc.123" and line["status"] == 200
    assert line["path"] == f"/webhooks/stripe/{offline_processor.id}"  # no query string
    assert line["processor"] == offline_processor.id and line["event_id"] == ev["id"]
    assert "donor@example.org" not in json.dumps(json_lines())


def test_an_event_line_carries_event_id_processor_and_stripe_request_ids(
    offline_processor, world, json_lines
):
    ren = Renewal(world)
    store_event(offline_processor, ren.events["invoice.paid"], source="replay")  # re-fetched from Stripe
    run_once()
    (line,) = [x for x in json_lines() if x["logger"] == "paydesk.events"]
    assert line["event_id"] == ren.events["invoice.paid"]["id"] and line["event_type"] == "invoice.paid"
    assert line["processor"] == offline_processor.id and line["status"] == "success"
    assert line["stripe_request_ids"] and all(r.startswith("req_") for r in line["stripe_request_ids"])
    assert line["duration_ms"] >= 0 and line["attempt"] == 1


def test_text_mode_writes_no_request_or_event_lines(client, offline_processor, caplog):
    caplog.set_level(logging.DEBUG, logger="admin")
    client.get("/healthz")
    assert not [r for r in caplog.records if r.name.startswith("paydesk.")]
    assert client.get("/healthz").headers["X-Request-ID"]  # request ids all the same


def test_create_app_with_json_logs_installs_one_json_handler(tmp_path):
    root = logging.getLogger()
    try:
        make_app(f"sqlite:///{tmp_path / 'a.sqlite3'}", tmp_path, LOG_FORMAT="json")
        make_app(f"sqlite:///{tmp_path / 'b.sqlite3'}", tmp_path, LOG_FORMAT="json")
        handlers = [h for h in root.handlers if getattr(h, "_paydesk_json", False)]
        assert len(handlers) == 1 and isinstance(handlers[0].formatter, logs.JsonFormatter)
        record = logging.LogRecord("admin.x", logging.WARNING, __file__, 1, "refused %s", ("x@y.org",), None)
        out = json.loads(handlers[0].formatter.format(record))
        assert out["level"] == "WARNING" and out["message"] == "refused [email]" and out["time"].endswith("Z")
    finally:
        for h in [h for h in root.handlers if getattr(h, "_paydesk_json", False)]:
            root.removeHandler(h)
