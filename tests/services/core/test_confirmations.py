"""services/core/confirmations: one table and one issue / find / use API for jobs and single actions."""

from __future__ import annotations

import pytest

from admin.errors import ServiceError
from admin.services.core import audit, confirmations
from admin.services.staff.users import create_user


@pytest.fixture
def operator(app):
    user = create_user("op@example.org", "a long enough password 1", "operator")
    with audit.acting_as(user.id, user.email):
        yield user


def test_a_single_action_keeps_its_parameters_and_is_used_once(operator):
    token = confirmations.issue(
        "connect.transfer_create",
        {"account": "acct_1", "amount": "25"},
        processor_id=None,
        count=None,
        shown={"title": "Transfer?"},
        action=True,
    )
    row = confirmations.find(token, ("connect.transfer_create",))
    assert confirmations.is_action(row)
    assert confirmations.use(row) == {"account": "acct_1", "amount": "25"}
    with pytest.raises(confirmations.ConfirmationRefused, match="used already"):
        confirmations.find(token, ("connect.transfer_create",))


def test_an_action_is_no_job_and_a_job_kind_no_action(operator):
    token = confirmations.issue(
        "connect.account_delete", {"account": "acct_1"}, processor_id=None, count=None, shown={}, action=True
    )
    row = confirmations.find(token, ("connect.account_delete",))
    with pytest.raises(confirmations.ConfirmationRefused, match="not for a job"):
        confirmations.run(row)
    with pytest.raises(confirmations.ConfirmationRefused, match="unknown here"):
        confirmations.find(token, ("events.retry_all",))
    with pytest.raises(ServiceError, match="is a job kind"):
        confirmations.issue("events.retry_all", {}, processor_id=None, count=None, shown={}, action=True)
