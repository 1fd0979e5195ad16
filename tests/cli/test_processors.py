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


def test_processor_add_and_set_refuse_an_api_base_that_is_not_stripes_or_allowed(
    app, runner, offline_processor
):
    added = runner.invoke(
        args=[
            "processor",
            "add",
            "--name",
            "Elsewhere",
            "--secret-key",
            "sk_test_x",
            "--webhook-secret",
            "whsec_x",
            "--api-base",
            "https://collector.example.net",
        ]
    )
    assert added.exit_code != 0 and "PAYDESK_STRIPE_API_BASES, not to collector.example.net" in added.output
    assert "Traceback" not in added.output
    moved = runner.invoke(
        args=[
            "processor",
            "set",
            str(offline_processor.id),
            "--secret-key",
            "sk_test_x",
            "--api-base",
            "https://collector.example.net",
        ]
    )
    assert moved.exit_code != 0 and "PAYDESK_STRIPE_API_BASES" in moved.output
    no_key = runner.invoke(
        args=["processor", "set", str(offline_processor.id), "--api-base", "http://localhost:1"]
    )
    assert no_key.exit_code != 0 and "type the secret key again" in no_key.output
    db_proc = runner.invoke(args=["processor", "list", "--format", "json"]).output
    assert "collector.example.net" not in db_proc and "localhost:1" not in db_proc
    ok = runner.invoke(
        args=[
            "processor",
            "set",
            str(offline_processor.id),
            "--api-base",
            "https://api.stripe.com",
            "--secret-key",
            "sk_test_again",
            "--format",
            "json",
        ]
    )
    assert ok.exit_code == 0 and json.loads(ok.output)[0]["api_base"] == "https://api.stripe.com"
