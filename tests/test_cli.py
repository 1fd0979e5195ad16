"""``flask --app wsgi processor ...`` and ``user ...`` through the Flask CLI runner."""

from __future__ import annotations

import json

import pytest
from conftest import csrf_token_from
from sqlalchemy import select

from admin.extensions import db
from admin.models import PaymentProcessor, User

SECRET = "sk_test_51Hpaydesk0123456789abcdefSECRET"
WHSEC = "whsec_0123456789abcdefghijWHSEC"


def _add(runner, *extra: str, name: str = "Main account", secret: str = SECRET):
    return runner.invoke(args=["processor", "add", "--name", name, "--secret-key", secret,
                               "--publishable-key", "pk_test_51Hpaydeskpublic", "--webhook-secret", WHSEC, *extra])


def _all_output(result) -> str:
    return result.output + (getattr(result, "stderr", "") or "")


def test_processor_add_prints_the_new_id(app, runner):
    result = _add(runner)
    assert result.exit_code == 0, _all_output(result)
    ppid = result.output.strip()
    assert ppid.isdigit(), f"expected just the new ppid, got {result.output!r}"
    proc = db.session.get(PaymentProcessor, int(ppid))
    assert proc.name == "Main account"
    assert proc.secret_key == SECRET  # stored encrypted, read back in clear
    assert SECRET not in proc.secret_key_enc
    assert proc.webhook_secrets == [WHSEC]
    assert proc.is_default, "the first processor becomes the default"


def test_processor_add_json_gives_an_object_with_id(app, runner):
    result = _add(runner, "--api-base", "http://127.0.0.1:8420", "--format", "json")
    assert result.exit_code == 0, _all_output(result)
    data = json.loads(result.output)
    assert isinstance(data, dict) and isinstance(data["id"], int)
    assert data["api_base"] == "http://127.0.0.1:8420"
    assert SECRET not in result.output and WHSEC not in result.output


def test_processor_list_masks_keys(app, runner):
    assert _add(runner).exit_code == 0
    assert _add(runner, "--default", name="Second", secret="sk_test_anotherkey9876").exit_code == 0

    table = runner.invoke(args=["processor", "list"])
    assert table.exit_code == 0, _all_output(table)
    assert "Main account" in table.output and "Second" in table.output
    assert SECRET not in table.output and WHSEC not in table.output and "sk_test_anotherkey9876" not in table.output
    assert SECRET[-4:] in table.output  # recognisable by its last characters

    as_json = runner.invoke(args=["processor", "list", "--format", "json"])
    rows = json.loads(as_json.output)
    assert [r["name"] for r in rows] == ["Main account", "Second"]
    assert [r["default"] for r in rows] == [False, True]
    for row in rows:
        assert row["secret_key"].startswith("sk_test_") and row["secret_key"].endswith(row["secret_key"][-4:])
        assert "…" in row["secret_key"]
        assert all("…" in s for s in row["webhook_secrets"])
    assert SECRET not in as_json.output and WHSEC not in as_json.output


@pytest.mark.parametrize("args, message", [
    (["--secret-key", "pk_test_oops"], "secret key must start with sk_"),
    (["--secret-key", "sk_live_realkey123"], "test processor needs a test secret key"),
    (["--secret-key", "sk_test_ok12345", "--publishable-key", "sk_test_wrongslot"], "publishable key must start with pk_"),
])
def test_processor_add_rejects_bad_keys(app, runner, args, message):
    result = runner.invoke(args=["processor", "add", "--name", "Bad", "--webhook-secret", WHSEC, *args])
    assert result.exit_code == 1, _all_output(result)
    assert message in _all_output(result)
    assert "Traceback" not in _all_output(result)
    assert db.session.scalar(select(PaymentProcessor)) is None


def test_processor_add_live_needs_live_key(app, runner):
    ok = runner.invoke(args=["processor", "add", "--name", "Live", "--mode", "live", "--secret-key", "sk_live_abc1234",
                             "--webhook-secret", WHSEC])
    assert ok.exit_code == 0, _all_output(ok)
    bad = runner.invoke(args=["processor", "add", "--name", "Live2", "--mode", "live", "--secret-key", "sk_test_abc1234",
                              "--webhook-secret", WHSEC])
    assert bad.exit_code == 1 and "live processor needs a live secret key" in _all_output(bad)


def test_processor_set_rotates_webhook_secrets(app, runner):
    ppid = _add(runner).output.strip()
    new = "whsec_newsecretafterrotation42"
    result = runner.invoke(args=["processor", "set", ppid, "--add-webhook-secret", new])
    assert result.exit_code == 0, _all_output(result)
    db.session.expire_all()
    assert db.session.get(PaymentProcessor, int(ppid)).webhook_secrets == [WHSEC, new]

    result = runner.invoke(args=["processor", "set", ppid, "--remove-webhook-secret", WHSEC])
    assert result.exit_code == 0, _all_output(result)
    db.session.expire_all()
    assert db.session.get(PaymentProcessor, int(ppid)).webhook_secrets == [new]
    assert new not in result.output


def test_processor_set_unknown_is_a_clear_error(app, runner):
    result = runner.invoke(args=["processor", "set", "42", "--name", "x"])
    assert result.exit_code == 1 and "no payment processor" in _all_output(result)


def test_user_create_password_stdin_then_sign_in(app, runner, client):
    password = "a long enough passphrase"
    result = runner.invoke(args=["user", "create", "--email", "Staff@Example.org", "--role", "operator",
                                 "--password-stdin"], input=password + "\n")
    assert result.exit_code == 0, _all_output(result)
    assert "staff@example.org" in result.output
    user = db.session.scalar(select(User).where(User.email == "staff@example.org"))
    assert user.role == "operator" and user.check_password(password) and password not in user.password_hash

    if "auth.login" not in app.view_functions:
        pytest.skip("the /login route does not exist yet; password checked through the model only")
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": "staff@example.org", "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    home = client.get("/")
    assert home.status_code == 200, "a signed-in user sees the dashboard"


def test_user_create_wrong_password_cannot_sign_in(app, runner, client):
    runner.invoke(args=["user", "create", "--email", "v@example.org", "--password-stdin"], input="right password 1\n")
    if "auth.login" not in app.view_functions:
        pytest.skip("the /login route does not exist yet")
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": "v@example.org", "password": "wrong password 1",
                                           "csrf_token": token})
    assert response.status_code != 302


def test_user_create_rejects_short_password_and_duplicates(app, runner):
    short = runner.invoke(args=["user", "create", "--email", "a@example.org", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "at least" in _all_output(short)
    ok = runner.invoke(args=["user", "create", "--email", "a@example.org", "--password-stdin"], input="long enough pw\n")
    assert ok.exit_code == 0
    dup = runner.invoke(args=["user", "create", "--email", "A@example.org", "--password-stdin"], input="long enough pw\n")
    assert dup.exit_code == 1 and "already has an account" in _all_output(dup)


def test_user_list_json(app, runner):
    runner.invoke(args=["user", "create", "--email", "b@example.org", "--role", "admin", "--password-stdin"],
                  input="long enough pw\n")
    rows = json.loads(runner.invoke(args=["user", "list", "--format", "json"]).output)
    assert [(r["email"], r["role"], r["active"]) for r in rows] == [("b@example.org", "admin", True)]
    assert "password" not in json.dumps(rows)
