"""``processor test``: the connection check the settings page's button makes."""

from __future__ import annotations

import json


def test_processor_test_prints_the_account_name(app, runner, connect_world, offline_processor):
    result = runner.invoke(args=["processor", "test", str(offline_processor.id)])
    assert result.exit_code == 0 and "connected to Friends of the Earthworm" in result.output
    data = json.loads(runner.invoke(args=["processor", "test", "--format", "json"]).output)
    assert (
        data["ok"] is True
        and data["account"] == "acct_platform0001"
        and data["request_id"].startswith("req_")
    )


def test_processor_test_prints_stripes_error(app, runner, connect_world, offline_processor):
    connect_world.refuse("GET", "/v1/account", 401, "Invalid API Key provided")
    result = runner.invoke(args=["processor", "test"])
    assert (
        result.exit_code == 1
        and "Error: Stripe: Invalid API Key provided (Stripe request req_" in result.output
    )
    assert "Traceback" not in result.output
