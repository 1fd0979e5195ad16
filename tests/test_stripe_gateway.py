"""admin.stripe_gateway: retries, idempotency keys and error mapping, mocked at the HTTP
boundary with ``responses`` (bodies from fixtures3.json), plus one real round trip to
localstripe.
"""

from __future__ import annotations

import json

import pytest
import requests
import responses
import stripe_objects as so

from admin.services.settings.processors import gateway
from admin.stripe_gateway import Gateway, GatewayError

API = "http://127.0.0.1:9"  # the offline_processor's API base: a closed port


def _error(status: int, message: str, type_: str = "api_error", **extra) -> dict:
    return {"status": status, "json": {"error": {"type": type_, "message": message, **extra}}}


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def test_create_retries_429_and_503_with_one_idempotency_key(app, offline_processor, mocked):
    body = so.customer(email="ada@example.org", name="Ada Lovelace")
    mocked.add(
        responses.POST,
        f"{API}/v1/customers",
        headers={"Request-Id": "req_429"},
        **_error(429, "Too many requests", "invalid_request_error", code="rate_limit"),
    )
    mocked.add(
        responses.POST,
        f"{API}/v1/customers",
        headers={"Request-Id": "req_503"},
        **_error(503, "Service unavailable"),
    )
    mocked.add(responses.POST, f"{API}/v1/customers", json=body, headers={"Request-Id": "req_ok"})

    result = gateway(offline_processor).create(
        "customers", {"email": "ada@example.org", "name": "Ada Lovelace"}
    )

    assert result["id"] == body["id"] and result["email"] == "ada@example.org"
    assert result.request_id == "req_ok"
    assert len(mocked.calls) == 3
    keys = [c.request.headers.get("Idempotency-Key") for c in mocked.calls]
    assert keys[0], "a create must carry an Idempotency-Key"
    assert keys == [keys[0]] * 3, f"retries must reuse the idempotency key, got {keys}"
    assert all("email=ada%40example.org" in c.request.body for c in mocked.calls)


def test_caller_idempotency_key_is_sent(app, offline_processor, mocked):
    mocked.add(responses.POST, f"{API}/v1/customers", json=so.customer())
    gateway(offline_processor).create(
        "customers", {"email": "a@example.org"}, idempotency_key="paydesk-form-42"
    )
    assert mocked.calls[0].request.headers["Idempotency-Key"] == "paydesk-form-42"


def test_different_creates_get_different_keys(app, offline_processor, mocked):
    mocked.add(responses.POST, f"{API}/v1/customers", json=so.customer())
    mocked.add(responses.POST, f"{API}/v1/customers", json=so.customer())
    gw = gateway(offline_processor)
    gw.create("customers", {"email": "a@example.org"})
    gw.create("customers", {"email": "a@example.org"})
    k1, k2 = (c.request.headers["Idempotency-Key"] for c in mocked.calls)
    assert k1 != k2


def test_gives_up_after_max_attempts_with_a_clear_error(app, offline_processor, mocked):
    app.config["STRIPE_MAX_ATTEMPTS"] = 3
    mocked.add(
        responses.POST,
        f"{API}/v1/customers",
        headers={"Request-Id": "req_down_123"},
        **_error(503, "Stripe is temporarily unavailable"),
    )

    with pytest.raises(GatewayError) as exc:
        gateway(offline_processor).create("customers", {"email": "a@example.org"})

    err = exc.value
    assert len(mocked.calls) == 3, "exactly STRIPE_MAX_ATTEMPTS requests"
    assert err.attempts == 3
    assert err.transient is True
    assert err.http_status == 503
    assert err.request_id == "req_down_123"
    text = str(err)
    assert "Stripe is temporarily unavailable" in text
    assert "3 attempts" in text
    assert "req_down_123" in text
    assert "503" in text


def test_card_declined_maps_code_and_decline_code(app, offline_processor, mocked):
    pi = so.payment_intent(status="requires_payment_method")
    mocked.add(
        responses.POST,
        f"{API}/v1/payment_intents/{pi['id']}/confirm",
        headers={"Request-Id": "req_decl"},
        **_error(
            402,
            "Your card has insufficient funds.",
            "card_error",
            code="card_declined",
            decline_code="insufficient_funds",
            payment_intent=pi,
        ),
    )

    with pytest.raises(GatewayError) as exc:
        gateway(offline_processor).call("payment_intents", "confirm", pi["id"])

    err = exc.value
    assert len(mocked.calls) == 1, "a decline is final: never retried"
    assert (err.code, err.decline_code, err.http_status) == ("card_declined", "insufficient_funds", 402)
    assert err.transient is False and err.attempts == 1
    assert err.kind == "card_error"
    assert err.message == "Your card has insufficient funds."
    assert err.request_id == "req_decl"
    assert "decline_code=insufficient_funds" in str(err)
    assert mocked.calls[0].request.headers.get("Idempotency-Key"), "confirm changes state: it needs a key too"


def test_connection_error_is_retried(app, offline_processor, mocked):
    body = so.customer()
    mocked.add(
        responses.GET, f"{API}/v1/customers/{body['id']}", body=requests.ConnectionError("connection refused")
    )
    mocked.add(responses.GET, f"{API}/v1/customers/{body['id']}", json=body)

    result = gateway(offline_processor).retrieve("customers", body["id"])

    assert result["id"] == body["id"]
    assert len(mocked.calls) == 2


def test_connection_error_that_persists_says_so(app, offline_processor, mocked):
    app.config["STRIPE_MAX_ATTEMPTS"] = 2
    mocked.add(
        responses.GET, f"{API}/v1/customers/cus_nope", body=requests.ConnectionError("connection refused")
    )
    with pytest.raises(GatewayError) as exc:
        gateway(offline_processor).retrieve("customers", "cus_nope")
    assert exc.value.transient and exc.value.attempts == 2
    assert "Could not reach Stripe" in str(exc.value)


def test_client_errors_are_not_retried(app, offline_processor, mocked):
    mocked.add(
        responses.GET,
        f"{API}/v1/customers/cus_missing",
        headers={"Request-Id": "req_404"},
        **_error(
            404,
            "No such customer: 'cus_missing'",
            "invalid_request_error",
            code="resource_missing",
            param="id",
        ),
    )
    with pytest.raises(GatewayError) as exc:
        gateway(offline_processor).retrieve("customers", "cus_missing")
    assert len(mocked.calls) == 1
    assert exc.value.not_found and exc.value.code == "resource_missing"


def test_list_passes_filters(app, offline_processor, mocked):
    page = {
        "object": "list",
        "data": [so.customer(), so.customer()],
        "has_more": False,
        "url": "/v1/customers",
    }
    mocked.add(responses.GET, f"{API}/v1/customers", json=page)
    result = gateway(offline_processor).list(
        "customers", limit=2, email="donor@example.org", starting_after=None
    )
    assert len(result["data"]) == 2
    query = mocked.calls[0].request.url.split("?", 1)[1]
    assert "limit=2" in query and "email=donor%40example.org" in query and "starting_after" not in query


def test_retry_after_header_is_honoured_as_a_floor(app, offline_processor, mocked):
    slept: list[float] = []
    gw = Gateway.for_processor(offline_processor)
    gw.policy.sleep = slept.append
    mocked.add(
        responses.POST,
        f"{API}/v1/customers",
        headers={"Retry-After": "5"},
        **_error(429, "Too many requests", "invalid_request_error", code="rate_limit"),
    )
    mocked.add(responses.POST, f"{API}/v1/customers", json=so.customer())
    gw.create("customers", {})
    assert slept == [pytest.approx(min(5, app.config["STRIPE_BACKOFF_MAX"]))]


@pytest.mark.localstripe
def test_real_customer_round_trip(app, empty_processor):
    gw = gateway(empty_processor)  # emptied: localstripe lists oldest first, and only 100 are asked for
    created = gw.create(
        "customers", {"email": "grace@example.org", "name": "Grace Hopper", "metadata": {"contact_id": "7"}}
    )
    assert created["id"].startswith("cus_")

    fetched = gw.retrieve("customers", created["id"])
    assert fetched["email"] == "grace@example.org"
    assert fetched["name"] == "Grace Hopper"
    assert fetched["metadata"] == {"contact_id": "7"}

    updated = gw.update("customers", created["id"], {"metadata": {"contact_id": "8"}})
    assert updated["metadata"]["contact_id"] == "8"
    listed = gw.list("customers", limit=100)
    assert created["id"] in {c["id"] for c in listed["data"]}
    json.dumps(fetched)  # a plain, JSON-able dict


@pytest.mark.localstripe
def test_real_not_found_is_mapped(app, processor):
    with pytest.raises(GatewayError) as exc:
        gateway(processor).retrieve("customers", "cus_doesnotexist")
    assert exc.value.not_found


# -- the direct path sends what the SDK would send -----------------------------------------------------------
# Gateway.call sends the common operations itself (CPU; see its docstring). Whatever it sends must be the
# request the official SDK's own service sends for the same call: same method, path, form body, API version,
# authorisation, connected account and idempotency key. Each case goes both ways; the two requests are compared.

_PARITY = [
    (
        "customers",
        "create",
        (),
        {
            "email": "ada+test@example.org",
            "name": "Ada Lovelace-Byron & Co",
            "metadata": {"contact_id": "12", "note": "ünïcode [x]"},
            "invoice_settings": {"default_payment_method": "pm_123"},
            "preferred_locales": ["en", "fr"],
            "tax_exempt": None,
        },
        so.customer(),
    ),
    (
        "payment_intents",
        "create",
        (),
        {
            "amount": 1250,
            "currency": "usd",
            "confirm": True,
            "off_session": False,
            "payment_method_types": ["card"],
            "expand": ["latest_charge"],
        },
        so.payment_intent(),
    ),
    (
        "payment_intents",
        "capture",
        ("pi_3MtwBwLkdIwHu7ix28a3tqPa",),
        {"amount_to_capture": 500},
        so.payment_intent(),
    ),
    ("payment_methods", "attach", ("pm_abc",), {"customer": "cus_abc"}, so.obj("payment_method")),
    (
        "charges",
        "list",
        (),
        {"limit": 3, "created": {"gte": 1700000000}, "customer": "cus_x"},
        {"object": "list", "data": [so.charge()], "has_more": False, "url": "/v1/charges"},
    ),
    ("customers", "retrieve", ("cus_x",), {"expand": ["default_source"]}, so.customer()),
    ("customers", "update", ("cus_x",), {"metadata": {"a": ""}, "description": "d"}, so.customer()),
]


def _sent(call) -> tuple:
    from urllib.parse import parse_qsl, urlsplit

    req = call.request
    url = urlsplit(req.url)
    body = req.body.decode() if isinstance(req.body, bytes) else req.body
    headers = {k.lower(): v for k, v in req.headers.items()}
    kept = ("authorization", "stripe-version", "stripe-account", "idempotency-key", "content-type")
    return (
        req.method,
        url.path,
        sorted(parse_qsl(url.query, keep_blank_values=True)),
        sorted(parse_qsl(body or "", keep_blank_values=True)),
        {k: headers.get(k) for k in kept},
    )


@pytest.mark.parametrize("account", [None, "acct_1Connected"])
@pytest.mark.parametrize(
    ("resource", "method", "args", "params", "reply"), _PARITY, ids=lambda v: str(v)[:20]
)
def test_direct_requests_are_the_sdks_requests(
    app, offline_processor, resource, method, args, params, reply, account
):
    import re

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.add(responses.GET, re.compile(f"{API}/v1/.*"), json=reply)
        mocked.add(responses.POST, re.compile(f"{API}/v1/.*"), json=reply)
        gw = gateway(offline_processor)
        # the caller's key where paydesk passes one (state-changing calls); updates get a fresh key each way
        key = {"idempotency_key": "paydesk-parity-1"} if method not in ("list", "retrieve", "update") else {}
        gw.call(resource, method, *args, params=params, stripe_account=account, **key)
        options = dict(key)
        if account:
            options["stripe_account"] = account
        getattr(getattr(gw.client.v1, resource), method)(*args, params=params, options=options)
        ours, sdks = (_sent(c) for c in mocked.calls)

    if method == "update":  # both send a key of their own making
        assert bool(ours[4].pop("idempotency-key")) == bool(sdks[4].pop("idempotency-key"))
    assert ours == sdks
