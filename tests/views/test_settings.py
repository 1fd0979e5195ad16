"""/settings/tokens: admins make tokens (shown once) and revoke them; others are refused; CSRF holds."""

from __future__ import annotations

import re

from admin.extensions import db
from admin.models import ApiToken


def test_admin_makes_a_token_sees_it_once_and_revokes_it(client, auth):
    auth.login(role="admin")
    page = client.get("/settings/tokens")
    assert page.status_code == 200 and "No tokens yet" in page.get_data(as_text=True)
    made = client.post(
        "/settings/tokens",
        data={
            "name": "CRM sync",
            "scopes": ["read", "write"],
            "days": "30",
            "csrf_token": auth.token("/settings/tokens"),
        },
    )
    html = made.get_data(as_text=True)
    assert made.status_code == 200
    secret = re.search(r'value="(pdk_[^"]+)"', html).group(1)
    token = db.session.query(ApiToken).one()
    assert token.scope_list == ["read", "write"] and token.token_hash != secret
    again = client.get("/settings/tokens").get_data(as_text=True)
    assert secret not in again and token.prefix in again  # shown once; afterwards only its first characters
    client.post(f"/settings/tokens/{token.id}/revoke", data={"csrf_token": auth.token("/settings/tokens")})
    db.session.rollback()
    assert db.session.get(ApiToken, token.id).revoked_at is not None
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_a_bad_name_is_shown_next_to_the_field(client, auth):
    auth.login(role="admin")
    resp = client.post(
        "/settings/tokens", data={"name": "", "days": "30", "csrf_token": auth.token("/settings/tokens")}
    )
    assert resp.status_code == 422
    assert 'aria-invalid="true"' in resp.get_data(as_text=True)


def test_only_admins(client, auth):
    auth.login(email="op@example.org", role="operator")
    assert client.get("/settings/tokens").status_code == 403
    assert (
        client.post("/settings/tokens", data={"name": "x", "csrf_token": auth.token("/")}).status_code == 403
    )


def test_the_form_needs_its_csrf_token(client, auth):
    auth.login(role="admin")
    assert client.post("/settings/tokens", data={"name": "no csrf"}).status_code == 400
    assert db.session.query(ApiToken).count() == 0
