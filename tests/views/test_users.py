"""/settings/users: admins add accounts, change roles, deactivate, reset passwords and two factors, and
end sessions; viewers and operators get 403; every form needs its CSRF token."""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD, Auth
from sqlalchemy import select
from staff_support import enrol, next_code, post_code, post_password

from admin.extensions import db
from admin.models import AuditLog, StaffSession
from admin.services.staff.users import find_user

ADMIN = "admin@example.org"
STAFF = "staff@example.org"


def _id(email: str) -> int:
    return find_user(email).id


def _admin_posts(user_id: int, session_id: int = 1) -> list[str]:
    base = f"/settings/users/{user_id}"
    return [
        "/settings/users",
        f"{base}/role",
        f"{base}/deactivate",
        f"{base}/activate",
        f"{base}/password",
        f"{base}/2fa/reset",
        f"{base}/sessions/revoke-all",
        f"{base}/sessions/{session_id}/revoke",
    ]


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_get_403(app, client, auth, role):
    auth.create(STAFF, "viewer")
    auth.login(f"{role}@example.org", role)
    token = auth.token()
    assert client.get("/settings/users").status_code == 403
    assert client.get(f"/settings/users/{_id(STAFF)}").status_code == 403
    for url in _admin_posts(_id(STAFF)):
        resp = client.post(url, data={"csrf_token": token, "role": "admin", "email": "x@example.org"})
        assert resp.status_code == 403, url
    assert find_user(STAFF).role == "viewer" and find_user("x@example.org") is None
    assert "Staff" not in client.get("/").get_data(as_text=True).split("</nav>")[0]


def test_every_post_needs_csrf(app, client, auth):
    auth.create(STAFF, "viewer")
    auth.login(ADMIN, "admin")
    for url in _admin_posts(_id(STAFF)):
        assert client.post(url, data={"role": "admin", "email": "x@example.org"}).status_code == 400, url
    assert find_user(STAFF).role == "viewer" and find_user(STAFF).active


def test_add_an_account_shows_its_temporary_password_once(app, client, auth):
    auth.login(ADMIN, "admin")
    page = client.get("/settings/users").get_data(as_text=True)
    assert ADMIN in page and 'for="email"' in page and 'for="role"' in page
    resp = client.post(
        "/settings/users",
        data={
            "csrf_token": auth.token("/settings/users"),
            "email": " New.Person@Example.org ",
            "role": "operator",
        },
    )
    assert resp.status_code == 200
    password = re.search(r'id="temporary-password">([^<]+)<', resp.get_data(as_text=True))[1]
    user = find_user("new.person@example.org")
    assert user.role == "operator" and user.must_change_password and user.check_password(password)
    assert password not in client.get(f"/settings/users/{user.id}").get_data(as_text=True)
    entry = db.session.scalar(
        select(AuditLog).where(AuditLog.action == "user.create", AuditLog.object_id == str(user.id))
    )
    assert entry.actor == ADMIN and password not in str(entry.parameters) + str(entry.message)

    newcomer = app.test_client()
    assert post_password(newcomer, "new.person@example.org", password).status_code == 302
    assert newcomer.get("/").headers["Location"] == "/account/password"


def test_the_same_rules_as_user_create(app, client, auth):
    auth.login(ADMIN, "admin")
    token = auth.token("/settings/users")
    taken = client.post("/settings/users", data={"csrf_token": token, "email": ADMIN, "role": "viewer"})
    assert taken.status_code == 422 and "already has an account" in taken.get_data(as_text=True)
    bad = client.post(
        "/settings/users", data={"csrf_token": token, "email": "not an address", "role": "viewer"}
    )
    assert bad.status_code == 422 and "enter an address such as" in bad.get_data(as_text=True)


@pytest.mark.postgres
def test_change_role_and_the_last_admin_rule(app, client, auth):
    auth.create(STAFF, "viewer")
    auth.login(ADMIN, "admin")
    token = auth.token("/settings/users")
    client.post(f"/settings/users/{_id(STAFF)}/role", data={"csrf_token": token, "role": "admin"})
    assert find_user(STAFF).role == "admin"
    mine = client.post(
        f"/settings/users/{_id(ADMIN)}/role",
        data={"csrf_token": token, "role": "viewer"},
        follow_redirects=True,
    )
    assert "cannot take the admin role from yourself" in mine.get_data(as_text=True)
    assert find_user(ADMIN).role == "admin"
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.role"))
    assert entry.parameters == {"email": STAFF, "from": "viewer", "to": "admin"} and entry.actor == ADMIN


def test_deactivate_ends_sessions_and_sign_in(app, client, auth):
    staff = app.test_client()
    Auth(app, staff).login(STAFF, "operator")
    assert staff.get("/").status_code == 200
    auth.login(ADMIN, "admin")
    client.post(f"/settings/users/{_id(STAFF)}/deactivate", data={"csrf_token": auth.token()})
    assert not find_user(STAFF).active
    assert staff.get("/").status_code == 302
    assert post_password(app.test_client(), STAFF).status_code == 422
    mine = client.post(
        f"/settings/users/{_id(ADMIN)}/deactivate", data={"csrf_token": auth.token()}, follow_redirects=True
    )
    assert "cannot deactivate your own account" in mine.get_data(as_text=True) and find_user(ADMIN).active
    client.post(f"/settings/users/{_id(STAFF)}/activate", data={"csrf_token": auth.token()})
    assert find_user(STAFF).active and post_password(app.test_client(), STAFF).status_code == 302


@pytest.mark.postgres
def test_session_revoke_takes_effect(app, client, auth):
    laptop, phone = app.test_client(), app.test_client()
    Auth(app, laptop).login(STAFF, "viewer")
    Auth(app, phone).login(STAFF, "viewer")
    auth.login(ADMIN, "admin")
    page = client.get(f"/settings/users/{_id(STAFF)}").get_data(as_text=True)
    assert page.count("Revoke<span") == 2
    laptop_row = db.session.scalar(
        select(StaffSession).where(StaffSession.user_id == _id(STAFF)).order_by(StaffSession.id)
    )
    client.post(
        f"/settings/users/{_id(STAFF)}/sessions/{laptop_row.id}/revoke", data={"csrf_token": auth.token()}
    )
    assert laptop.get("/").status_code == 302, "the revoked session is signed out at its next request"
    assert phone.get("/").status_code == 200, "the other one goes on"
    assert client.get(f"/settings/users/{_id(STAFF)}").get_data(as_text=True).count("Revoke<span") == 1
    client.post(f"/settings/users/{_id(STAFF)}/sessions/revoke-all", data={"csrf_token": auth.token()})
    assert phone.get("/").status_code == 302
    actions = db.session.scalars(select(AuditLog.action).where(AuditLog.actor == ADMIN)).all()
    assert "user.revoke_session" in actions and "user.revoke_sessions" in actions


def test_a_session_of_someone_else_cannot_be_revoked_through_another_account(app, client, auth):
    other = app.test_client()
    Auth(app, other).login(STAFF, "viewer")
    auth.create("third@example.org", "viewer")
    auth.login(ADMIN, "admin")
    row = db.session.scalar(select(StaffSession).where(StaffSession.user_id == _id(STAFF)))
    resp = client.post(
        f"/settings/users/{_id('third@example.org')}/sessions/{row.id}/revoke",
        data={"csrf_token": auth.token()},
        follow_redirects=True,
    )
    assert "has no session" in resp.get_data(as_text=True)
    assert other.get("/").status_code == 200


def test_reset_password_gives_a_temporary_one(app, client, auth):
    staff = app.test_client()
    Auth(app, staff).login(STAFF, "operator")
    auth.login(ADMIN, "admin")
    resp = client.post(f"/settings/users/{_id(STAFF)}/password", data={"csrf_token": auth.token()})
    password = re.search(r'id="temporary-password">([^<]+)<', resp.get_data(as_text=True))[1]
    assert staff.get("/").status_code == 302, "every session ends"
    assert post_password(app.test_client(), STAFF, PASSWORD).status_code == 422
    again = app.test_client()
    assert post_password(again, STAFF, password).status_code == 302
    assert again.get("/").headers["Location"] == "/account/password"


def test_reset_two_factor_lets_the_password_alone_sign_in(app, client, auth):
    auth.create(STAFF, "viewer")
    enrol(STAFF)
    auth.login(ADMIN, "admin")
    assert "on since" in client.get(f"/settings/users/{_id(STAFF)}").get_data(as_text=True)
    client.post(f"/settings/users/{_id(STAFF)}/2fa/reset", data={"csrf_token": auth.token()})
    assert not find_user(STAFF).two_factor
    staff = app.test_client()
    assert post_password(staff, STAFF).headers["Location"] == "/"
    assert "user.2fa_reset" in db.session.scalars(select(AuditLog.action)).all()


def test_a_user_with_two_factors_lists_on_the_page(app, client, auth):
    auth.create(STAFF, "viewer")
    secret, _ = enrol(STAFF)
    staff = app.test_client()
    post_password(staff, STAFF)
    post_code(staff, next_code(secret))
    auth.login(ADMIN, "admin")
    page = client.get("/settings/users").get_data(as_text=True)
    row = page[page.index(STAFF) :].split("</tr>")[0]
    assert ">on<" in row and 'data-label="Open sessions" class="num">1<' in row


def test_unknown_account_is_404(client, auth):
    auth.login(ADMIN, "admin")
    assert client.get("/settings/users/999").status_code == 404
