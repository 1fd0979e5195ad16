"""Account rules shared by the CLI and the users page."""

from __future__ import annotations

import pytest
from conftest import PASSWORD
from sqlalchemy import select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog
from admin.services.staff import users as service
from admin.timeutil import utcnow


def test_the_last_active_admin_stays_one(app):
    admin = service.create_user("admin@example.org", PASSWORD, "admin")
    with pytest.raises(ServiceError, match="only active admin"):
        service.change_role(admin, "operator")
    with pytest.raises(ServiceError, match="only active admin"):
        service.deactivate(admin)
    second = service.create_user("second@example.org", PASSWORD, "admin")
    service.change_role(admin, "operator")
    assert admin.role == "operator"
    with pytest.raises(ServiceError, match="only active admin"):
        service.deactivate(second)


def test_a_deactivated_admin_does_not_count(app):
    admin = service.create_user("admin@example.org", PASSWORD, "admin")
    other = service.create_user("other@example.org", PASSWORD, "admin")
    service.deactivate(other)
    with pytest.raises(ServiceError, match="only active admin"):
        service.change_role(admin, "viewer")


def test_invite_uses_the_create_rules(app):
    service.create_user("taken@example.org", PASSWORD, "viewer")
    with pytest.raises(ServiceError, match="already has an account"):
        service.invite_user("TAKEN@example.org", "viewer")
    with pytest.raises(ServiceError, match="role: choose one of"):
        service.invite_user("new@example.org", "superuser")
    user, password = service.invite_user("new@example.org", "operator")
    assert user.check_password(password) and user.must_change_password
    assert user.password_expires_at > utcnow()


def test_role_changes_are_audited_and_checked(app):
    user = service.create_user("staff@example.org", PASSWORD, "viewer")
    with pytest.raises(ServiceError, match="already viewer"):
        service.change_role(user, "viewer")
    service.change_role(user, "operator")
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.role"))
    assert entry.parameters == {"email": "staff@example.org", "from": "viewer", "to": "operator"}


def test_own_password_change_checks_the_current_one(app):
    user = service.create_user("staff@example.org", PASSWORD, "viewer")
    with pytest.raises(ServiceError, match="not your current password"):
        service.change_own_password(user, "wrong", "a new long password", None)
    with pytest.raises(ServiceError, match="at least 10"):
        service.change_own_password(user, PASSWORD, "short", None)
    service.change_own_password(user, PASSWORD, "a new long password", None)
    assert user.check_password("a new long password")
