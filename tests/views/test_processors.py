"""``/settings/processors`` (admin): processors added and changed in the browser as ``processor add|set`` do,
keys never shown again in clear, and "test connection" showing the account's name or Stripe's error."""

from __future__ import annotations

import pytest
from conftest import csrf_token_from
from sqlalchemy import select

from admin.extensions import db
from admin.models import AuditLog, DonationForm, PaymentProcessor

SECRET = "sk_test_pageEnteredSecretKey0000abcd"


def _new(client, **changes):
    token = csrf_token_from(client.get("/settings/processors/new").get_data(as_text=True))
    data = {
        "csrf_token": token,
        "name": "Main account",
        "mode": "test",
        "secret_key": SECRET,
        "publishable_key": "pk_test_pagekey",
        "webhook_secret": "whsec_page_entered_secret_9876",
        "api_base": "",
        "active": "y",
    }
    data.update(changes)
    return client.post("/settings/processors/new", data={k: v for k, v in data.items() if v is not None})


def test_admin_adds_a_processor_and_sees_its_keys_only_masked(app, client, auth):
    auth.login("admin@example.org", "admin")
    resp = _new(client)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    proc = db.session.scalar(select(PaymentProcessor))
    assert (proc.name, proc.secret_key, proc.webhook_secrets, proc.is_default) == (
        "Main account",
        SECRET,
        ["whsec_page_entered_secret_9876"],
        True,
    )
    page = client.get("/settings/processors").get_data(as_text=True)
    assert "Main account" in page and "sk_test_…abcd" in page and "whsec_…9876" in page
    assert SECRET not in page and "whsec_page_entered_secret_9876" not in page
    edit = client.get(f"/settings/processors/{proc.id}/edit").get_data(as_text=True)
    assert SECRET not in edit and "sk_test_…abcd" in edit
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "processor.add"))
    assert entry.actor == "admin@example.org" and SECRET not in str(entry.parameters)


def test_an_empty_key_field_keeps_the_stored_key_and_changes_are_audited(
    app, client, auth, offline_processor
):
    auth.login("admin@example.org", "admin")
    url = f"/settings/processors/{offline_processor.id}/edit"
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    resp = client.post(
        url,
        data={
            "csrf_token": token,
            "name": "Renamed",
            "mode": "test",
            "secret_key": "",
            "publishable_key": "pk_test_new",
            "webhook_secret": "whsec_second_one_for_rotation",
            "api_base": "http://127.0.0.1:9",
            "default": "y",
            "active": "y",
        },
    )
    assert resp.status_code == 302
    db.session.refresh(offline_processor)
    assert offline_processor.secret_key == "sk_test_mocked" and offline_processor.name == "Renamed"
    assert offline_processor.publishable_key == "pk_test_new"
    assert (
        len(offline_processor.webhook_secrets) == 2
    )  # the new secret beside the old: rotation drops nothing
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "processor.update"))
    assert entry.parameters["name"] == {"from": "Stripe mocked", "to": "Renamed"}


def test_bad_keys_are_refused_on_their_field(app, client, auth):
    auth.login("admin@example.org", "admin")
    resp = _new(client, secret_key="pk_test_wrong_kind_of_key")
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="secret_key-error"' in text and "must start with sk_" in text
    resp = _new(client, mode="live")
    assert resp.status_code == 422 and "A live processor needs a live secret key" in resp.get_data(
        as_text=True
    )
    assert _new(client, name="").status_code == 422
    assert db.session.scalar(select(PaymentProcessor)) is None


def test_test_connection_shows_the_account_name(app, client, auth, connect_world, offline_processor):
    auth.login("admin@example.org", "admin")
    token = auth.token("/settings/processors")
    resp = client.post(
        f"/settings/processors/{offline_processor.id}/test",
        data={"csrf_token": token},
        headers={"HX-Request": "true"},
    )
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Friends of the Earthworm (acct_platform0001, test mode)" in text
    assert [c for c in connect_world.calls] == [("GET", "/v1/account")]  # one read-only request


def test_test_connection_shows_stripes_error_and_request_id(
    app, client, auth, connect_world, offline_processor
):
    auth.login("admin@example.org", "admin")
    connect_world.refuse("GET", "/v1/account", 401, "Invalid API Key provided: sk_test_****cked")
    resp = client.post(
        f"/settings/processors/{offline_processor.id}/test",
        data={"csrf_token": auth.token()},
        headers={"HX-Request": "true"},
    )
    text = resp.get_data(as_text=True)
    assert "Stripe: Invalid API Key provided" in text and "Stripe request req_world" in text
    assert "flash-error" in text


def test_the_api_base_must_be_stripes_or_an_allowed_host(app, client, auth):
    auth.login("admin@example.org", "admin")
    for bad in (
        "https://collector.example.net",
        "http://api.stripe.com",
        "https://api.stripe.com.example.net",
        "https://someone@127.0.0.1:8420",
        "http://127.0.0.1:8420/v1/elsewhere",
    ):
        resp = _new(client, api_base=bad)
        text = resp.get_data(as_text=True)
        assert resp.status_code == 422 and 'id="api_base-error"' in text, bad
    assert db.session.scalar(select(PaymentProcessor)) is None
    assert (
        _new(client, api_base="https://collector.example.net")
        .get_data(as_text=True)
        .count("PAYDESK_STRIPE_API_BASES")
    )
    assert _new(client, api_base="https://api.stripe.com/").status_code == 302
    assert db.session.scalar(select(PaymentProcessor)).api_base == "https://api.stripe.com"


def test_changing_the_api_base_needs_the_secret_key_typed_again(app, client, auth, offline_processor):
    auth.login("admin@example.org", "admin")
    url = f"/settings/processors/{offline_processor.id}/edit"
    form = {
        "csrf_token": auth.token(url),
        "name": "Stripe mocked",
        "mode": "test",
        "secret_key": "",
        "api_base": "http://localhost:8420",
        "active": "y",
    }
    resp = client.post(url, data=form)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="secret_key-error"' in text and "Type the secret key again" in text
    db.session.refresh(offline_processor)
    assert offline_processor.api_base == "http://127.0.0.1:9"
    resp = client.post(url, data={**form, "secret_key": "sk_test_typedAgain"})
    assert resp.status_code == 302
    db.session.refresh(offline_processor)
    assert (offline_processor.api_base, offline_processor.secret_key) == (
        "http://localhost:8420",
        "sk_test_typedAgain",
    )


def test_test_connection_never_sends_the_key_to_a_host_no_longer_allowed(
    app, client, auth, connect_world, offline_processor
):
    offline_processor.api_base = "https://collector.example.net"  # stored before the allow-list existed
    db.session.commit()
    auth.login("admin@example.org", "admin")
    resp = client.post(
        f"/settings/processors/{offline_processor.id}/test",
        data={"csrf_token": auth.token()},
        headers={"HX-Request": "true"},
    )
    text = resp.get_data(as_text=True)
    assert "PAYDESK_STRIPE_API_BASES" in text and "flash-error" in text
    assert connect_world.calls == []


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_see_or_change_processors(app, client, auth, offline_processor, role):
    auth.login(f"{role}@example.org", role)
    assert client.get("/settings/processors").status_code == 403
    assert (
        client.post(
            f"/settings/processors/{offline_processor.id}/test", data={"csrf_token": auth.token()}
        ).status_code
        == 403
    )
    assert "/settings/processors" not in client.get("/").get_data(as_text=True)  # not in the navigation


def test_a_form_whose_processor_has_no_publishable_key_is_refused(app, client, auth, runner):
    from admin.services.settings.processors import add_processor

    proc = add_processor(name="No pk", secret_key="sk_test_nopk", webhook_secrets=["whsec_x"])
    result = runner.invoke(
        args=[
            "forms",
            "add",
            "--slug",
            "spring",
            "--title",
            "Spring",
            "--ppid",
            str(proc.id),
            "--amounts",
            "10",
        ]
    )
    assert result.exit_code != 0 and "No pk has no publishable key" in result.output
    assert "Traceback" not in result.output
    auth.login("admin@example.org", "admin")
    token = auth.token("/forms/new")
    resp = client.post(
        "/forms/new",
        data={
            "csrf_token": token,
            "title": "Spring",
            "slug": "spring",
            "processor_id": str(proc.id),
            "currency": "usd",
            "amounts": "10",
            "min_amount": "1",
            "frequencies": ["one-off"],
        },
    )
    assert resp.status_code == 422 and "has no publishable key" in resp.get_data(as_text=True)
    assert db.session.scalar(select(DonationForm)) is None
