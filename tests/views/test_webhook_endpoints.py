"""``/settings/webhooks`` (admin): endpoints listed, created, disabled and deleted (after a confirmation)."""

from __future__ import annotations

import pytest
from confirm_support import confirm

from admin.extensions import db
from admin.stripe_event_types import RECOMMENDED

HX = {"HX-Request": "true"}


def test_the_page_shows_our_endpoint_and_what_it_lacks(app, client, auth, connect_world, offline_processor):
    connect_world.endpoint(f"http://127.0.0.1:5000/webhooks/stripe/{offline_processor.id}", ["invoice.paid"])
    auth.login("admin@example.org", "admin")
    page = client.get(f"/settings/webhooks?ppid={offline_processor.id}").get_data(as_text=True)
    assert "this paydesk" in page and f"{len(RECOMMENDED) - 1} missing" in page and "charge.refunded" in page
    assert "No endpoint of this Stripe account points there" not in page


def test_an_account_without_our_endpoint_says_so_and_create_adds_it(
    app, client, auth, connect_world, offline_processor
):
    auth.login("admin@example.org", "admin")
    page = client.get("/settings/webhooks").get_data(as_text=True)
    assert "No endpoint of this Stripe account points there" in page
    token = auth.token("/settings/webhooks")
    resp = client.post(
        "/settings/webhooks/create",
        headers=HX,
        data={"csrf_token": token, "ppid": offline_processor.id, "action_key": "abc"},
    )
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Created we_" in text and "this paydesk" in text
    db.session.refresh(offline_processor)
    assert len(offline_processor.webhook_secrets) == 2


def test_delete_asks_first_then_deletes(app, client, auth, connect_world, offline_processor):
    e = connect_world.endpoint(
        f"http://127.0.0.1:5000/webhooks/stripe/{offline_processor.id}", list(RECOMMENDED)
    )
    auth.login("admin@example.org", "admin")
    token = auth.token("/settings/webhooks")
    ask = client.post(
        f"/settings/webhooks/{e['id']}/delete",
        headers=HX,
        data={"csrf_token": token, "ppid": offline_processor.id},
    )
    assert f"Delete webhook endpoint {e['id']}?" in ask.get_data(as_text=True)
    assert connect_world.count("DELETE", "/v1/webhook_endpoints") == 0
    url = f"/settings/webhooks/{e['id']}/delete"
    bare = client.post(
        url, headers=HX, data={"csrf_token": token, "ppid": offline_processor.id, "step": "run"}
    )
    assert bare.status_code == 400 and "confirm first" in bare.get_data(as_text=True)
    assert connect_world.count("DELETE", "/v1/webhook_endpoints") == 0
    done = confirm(client, url, ask, {"csrf_token": token}, headers=HX)
    assert done.status_code == 200 and f"Deleted {e['id']} (Stripe request req_world" in done.get_data(
        as_text=True
    )
    assert connect_world.count("DELETE", "/v1/webhook_endpoints") == 1
    again = confirm(client, url, ask, {"csrf_token": token}, headers=HX)
    assert again.status_code == 400 and "used already" in again.get_data(as_text=True)
    assert connect_world.count("DELETE", "/v1/webhook_endpoints") == 1


def test_disable_without_javascript_flashes_and_returns(app, client, auth, connect_world, offline_processor):
    e = connect_world.endpoint("https://elsewhere.example.org/hook", ["charge.succeeded"])
    auth.login("admin@example.org", "admin")
    resp = client.post(
        f"/settings/webhooks/{e['id']}/disable",
        follow_redirects=True,
        data={"csrf_token": auth.token("/settings/webhooks"), "ppid": offline_processor.id},
    )
    assert resp.status_code == 200 and f"{e['id']} is disabled now." in resp.get_data(as_text=True)


def test_a_stripe_error_listing_is_shown_not_a_500(app, client, auth, connect_world, offline_processor):
    connect_world.fail(r"/v1/webhook_endpoints", [500, 500, 500, 500])
    auth.login("admin@example.org", "admin")
    resp = client.get("/settings/webhooks")
    assert resp.status_code == 200 and "Stripe: injected 500 (Stripe request req_world" in resp.get_data(
        as_text=True
    )


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins(app, client, auth, connect_world, offline_processor, role):
    auth.login(f"{role}@example.org", role)
    assert client.get("/settings/webhooks").status_code == 403
    token = auth.token()
    for path in (
        "/settings/webhooks/create",
        "/settings/webhooks/we_1/disable",
        "/settings/webhooks/we_1/delete",
    ):
        assert client.post(path, data={"csrf_token": token, "step": "run"}).status_code == 403
    assert connect_world.sent == []
