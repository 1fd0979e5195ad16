"""``webhook-endpoints list|create|disable|enable|delete``."""

from __future__ import annotations

import json

from admin.stripe_event_types import RECOMMENDED


def test_list_create_and_delete(app, runner, connect_world, offline_processor):
    empty = runner.invoke(args=["webhook-endpoints", "list"])
    assert empty.exit_code == 0 and "No endpoint points at it" in empty.output
    made = runner.invoke(args=["webhook-endpoints", "create", "--format", "json"])
    assert made.exit_code == 0, made.output
    data = json.loads(made.output)
    assert data["ours"] is True and data["missing"] == [] and "secret" not in data
    rows = json.loads(runner.invoke(args=["webhook-endpoints", "list", "--format", "json"]).output)
    assert [r["id"] for r in rows] == [data["id"]] and len(rows[0]["enabled_events"]) == len(RECOMMENDED)
    off = runner.invoke(args=["webhook-endpoints", "disable", data["id"]])
    assert off.exit_code == 0 and "is disabled" in off.output
    refused = runner.invoke(args=["webhook-endpoints", "delete", data["id"]], input="n\n")
    assert refused.exit_code == 1 and connect_world.count("DELETE", "/v1/webhook_endpoints") == 0
    gone = runner.invoke(args=["webhook-endpoints", "delete", data["id"], "--yes"])
    assert gone.exit_code == 0 and f"deleted {data['id']}" in gone.output


def test_errors_are_one_line(app, runner, connect_world, offline_processor):
    bad = runner.invoke(args=["webhook-endpoints", "delete", "nope", "--yes"])
    assert bad.exit_code == 1 and "Error: 'nope' is not a webhook endpoint id" in bad.output
    missing = runner.invoke(args=["webhook-endpoints", "disable", "we_missing"])
    assert missing.exit_code == 1 and "there is no webhook endpoint we_missing" in missing.output
    assert "Traceback" not in bad.output + missing.output
