"""``flask --app wsgi processor ...`` and ``user ...`` through the Flask CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, TEST_ENCRYPTION_KEY, csrf_token_from
from sqlalchemy import select

from admin.extensions import db
from admin.models import PaymentProcessor, User

SECRET = "sk_test_51Hpaydesk0123456789abcdefSECRET"
WHSEC = "whsec_0123456789abcdefghijWHSEC"


def _add(runner, *extra: str, name: str = "Main account", secret: str = SECRET):
    return runner.invoke(
        args=[
            "processor",
            "add",
            "--name",
            name,
            "--secret-key",
            secret,
            "--publishable-key",
            "pk_test_51Hpaydeskpublic",
            "--webhook-secret",
            WHSEC,
            *extra,
        ]
    )


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
    assert (
        SECRET not in table.output
        and WHSEC not in table.output
        and "sk_test_anotherkey9876" not in table.output
    )
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


@pytest.mark.parametrize(
    "args, message",
    [
        (["--secret-key", "pk_test_oops"], "secret key must start with sk_"),
        (["--secret-key", "sk_live_realkey123"], "test processor needs a test secret key"),
        (
            ["--secret-key", "sk_test_ok12345", "--publishable-key", "sk_test_wrongslot"],
            "publishable key must start with pk_",
        ),
    ],
)
def test_processor_add_rejects_bad_keys(app, runner, args, message):
    result = runner.invoke(args=["processor", "add", "--name", "Bad", "--webhook-secret", WHSEC, *args])
    assert result.exit_code == 1, _all_output(result)
    assert message in _all_output(result)
    assert "Traceback" not in _all_output(result)
    assert db.session.scalar(select(PaymentProcessor)) is None


def test_processor_add_live_needs_live_key(app, runner):
    ok = runner.invoke(
        args=[
            "processor",
            "add",
            "--name",
            "Live",
            "--mode",
            "live",
            "--secret-key",
            "sk_live_abc1234",
            "--webhook-secret",
            WHSEC,
        ]
    )
    assert ok.exit_code == 0, _all_output(ok)
    bad = runner.invoke(
        args=[
            "processor",
            "add",
            "--name",
            "Live2",
            "--mode",
            "live",
            "--secret-key",
            "sk_test_abc1234",
            "--webhook-secret",
            WHSEC,
        ]
    )
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
    result = runner.invoke(
        args=["user", "create", "--email", "Staff@Example.org", "--role", "operator", "--password-stdin"],
        input=password + "\n",
    )
    assert result.exit_code == 0, _all_output(result)
    assert "staff@example.org" in result.output
    user = db.session.scalar(select(User).where(User.email == "staff@example.org"))
    assert user.role == "operator" and user.check_password(password) and password not in user.password_hash

    if "auth.login" not in app.view_functions:
        pytest.skip("the /login route does not exist yet; password checked through the model only")
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": "staff@example.org", "password": password, "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    home = client.get("/")
    assert home.status_code == 200, "a signed-in user sees the dashboard"


def test_user_create_wrong_password_cannot_sign_in(app, runner, client):
    runner.invoke(
        args=["user", "create", "--email", "v@example.org", "--password-stdin"], input="right password 1\n"
    )
    if "auth.login" not in app.view_functions:
        pytest.skip("the /login route does not exist yet")
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": "v@example.org", "password": "wrong password 1", "csrf_token": token}
    )
    assert response.status_code != 302


def test_user_create_rejects_short_password_and_duplicates(app, runner):
    short = runner.invoke(
        args=["user", "create", "--email", "a@example.org", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 1 and "at least" in _all_output(short)
    ok = runner.invoke(
        args=["user", "create", "--email", "a@example.org", "--password-stdin"], input="long enough pw\n"
    )
    assert ok.exit_code == 0
    dup = runner.invoke(
        args=["user", "create", "--email", "A@example.org", "--password-stdin"], input="long enough pw\n"
    )
    assert dup.exit_code == 1 and "already has an account" in _all_output(dup)


@pytest.mark.parametrize("email", ["not-an-address", "a@example.org"])
def test_user_create_refuses_a_bad_or_taken_email_before_asking_for_the_password(app, runner, email):
    runner.invoke(
        args=["user", "create", "--email", "a@example.org", "--password-stdin"], input="long enough pw\n"
    )
    result = runner.invoke(args=["user", "create", "--email", email], input="")  # nobody at the keyboard
    assert result.exit_code == 1, result.output
    assert "Password" not in result.output and result.output.startswith("Error: email:"), result.output


def test_user_list_json(app, runner):
    runner.invoke(
        args=["user", "create", "--email", "b@example.org", "--role", "admin", "--password-stdin"],
        input="long enough pw\n",
    )
    rows = json.loads(runner.invoke(args=["user", "list", "--format", "json"]).output)
    assert [(r["email"], r["role"], r["active"]) for r in rows] == [("b@example.org", "admin", True)]
    assert "password" not in json.dumps(rows)


# -- masking, removing signing secrets, audit ----------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["sk_test_" + "a" * n for n in range(0, 40)]
    + ["whsec_" + "b" * n for n in range(0, 40)]
    + ["x" * n for n in range(1, 40)]
    + ["a_b_c_d_e_f_g_h_" + "z" * 30, "sk_" + "c" * 20],
)
def test_mask_shows_at_most_a_prefix_and_the_last_four(value):
    from admin.crypto import KNOWN_PREFIXES, mask

    shown = mask(value)
    prefix = next((p for p in KNOWN_PREFIXES if value.startswith(p)), "")
    assert shown.startswith(prefix + "…")
    tail = shown[len(prefix) + 1 :]
    assert len(tail) <= 4 and value.endswith(tail)
    secret_part = value[len(prefix) :]
    assert shown != value
    if tail:  # the last four only of a value long enough that at least 12 characters stay hidden
        assert len(secret_part) - len(tail) >= 12, f"{value!r} -> {shown!r} leaves too little hidden"


def test_processor_list_never_shows_a_short_key_whole(app, runner):
    assert _add(runner, secret="sk_test_shortkey").exit_code == 0
    listing = runner.invoke(args=["processor", "list", "--format", "json"])
    assert "shortkey" not in listing.output and "hortkey" not in listing.output
    assert json.loads(listing.output)[0]["secret_key"] == "sk_test_…"


@pytest.mark.parametrize(
    "remove, message",
    [
        ("", "at least its last 4 characters"),
        ("WH", "at least its last 4 characters"),
        ("nomatch", "no signing secret of this processor ends with"),
        ("WHSEC", "2 signing secrets end with"),
    ],
)
def test_processor_set_refuses_unclear_removals(app, runner, remove, message):
    ppid = _add(runner).output.strip()
    assert (
        runner.invoke(
            args=["processor", "set", ppid, "--add-webhook-secret", "whsec_second_oneWHSEC"]
        ).exit_code
        == 0
    )
    result = runner.invoke(args=["processor", "set", ppid, "--remove-webhook-secret", remove])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    db.session.expire_all()
    assert len(db.session.get(PaymentProcessor, int(ppid)).webhook_secrets) == 2


def test_removing_the_last_signing_secret_needs_force(app, runner):
    ppid = _add(runner).output.strip()
    refused = runner.invoke(args=["processor", "set", ppid, "--remove-webhook-secret", WHSEC])
    assert refused.exit_code == 1 and "--force" in refused.output
    db.session.expire_all()
    assert db.session.get(PaymentProcessor, int(ppid)).webhook_secrets == [WHSEC]
    forced = runner.invoke(args=["processor", "set", ppid, "--remove-webhook-secret", WHSEC[-6:], "--force"])
    assert forced.exit_code == 0, forced.output
    db.session.expire_all()
    assert db.session.get(PaymentProcessor, int(ppid)).webhook_secrets == []


def test_processor_and_user_changes_from_the_cli_are_audited(app, runner):
    import getpass

    from admin.models import AuditLog

    ppid = _add(runner).output.strip()
    runner.invoke(
        args=["processor", "set", ppid, "--name", "Renamed", "--add-webhook-secret", "whsec_rotated_1234abcd"]
    )
    runner.invoke(
        args=["user", "create", "--email", "c@example.org", "--role", "admin", "--password-stdin"],
        input="long enough pw\n",
    )
    entries = db.session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert [e.action for e in entries] == ["processor.add", "processor.update", "user.create"]
    assert {e.actor for e in entries} == {f"cli:{getpass.getuser()}"}
    update = entries[1]
    assert update.parameters["name"] == {"from": "Main account", "to": "Renamed"}
    assert update.object_id == ppid and update.processor_id == int(ppid)
    everything = json.dumps([e.parameters for e in entries])
    assert SECRET not in everything and WHSEC not in everything and "whsec_rotated_1234abcd" not in everything
    assert "long enough pw" not in everything


# -- bad input: one line, no traceback -------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["contributions", "list", "--limit", "99999999999999999999"],
        ["contributions", "list", "--contact-id", "99999999999"],
        ["contributions", "list", "--contact-id", "²"],
        ["payments", "list", "--contribution-id", "-1"],
        ["payments", "list", "--ppid", "abc"],
        ["recurring", "list", "--ppid", "2147483648"],
        ["intents", "list", "--limit", "0"],
        ["contacts", "list", "--limit", "1e3"],
        ["events", "list", "--limit", "99999999999999999999"],
        ["events", "list", "--ppid", "²"],
        ["events", "list", "--ppid", "9223372036854775808"],
        ["processor", "set", "²", "--name", "x"],
        ["processor", "set", "99999999999999999999", "--name", "x"],
        ["processor", "add", "--name", "n" * 101, "--secret-key", "sk_test_x", "--webhook-secret", "whsec_x"],
        ["user", "set-password", "--email", "nobody@example.org", "--password-stdin"],
        ["user", "revoke-sessions", "--email", "x" * 300],
        ["user", "create", "--email", "y" * 300 + "@example.org", "--password-stdin"],
        ["processor", "nosuchcommand"],
    ],
)
@pytest.mark.postgres
def test_bad_input_gets_one_line_and_no_traceback(app, runner, backend, args):
    result = runner.invoke(args=args, input="long enough password\n")
    out = result.output
    assert result.exit_code in (1, 2), out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out


@pytest.mark.postgres
def test_long_filters_are_refused_in_one_line(app, runner, backend):
    """Over-long strings (ids are at most 255 characters): refused with the option named, never sent to the
    database (PostgreSQL would refuse them in a column) and never echoed back."""
    for args, option in (
        (["contributions", "list", "--trxn-id", "ch_" + "x" * 5000], "--trxn-id"),
        (["contacts", "list", "--customer", "cus_" + "c" * 5000], "--customer"),
        (["events", "list", "--subscription", "sub_" + "q" * 5000], "--subscription"),
    ):
        result = runner.invoke(args=[*args, "--format", "json"])
        assert result.exit_code == 1 and f"{option}: at most 255 characters" in result.output, result.output
        assert len(result.output) < 300
    # paging on from an event paydesk does not have is an error, said in one short line
    result = runner.invoke(args=["events", "list", "--starting-after", "evt_" + "e" * 5000])
    assert result.exit_code == 1 and len(result.output) < 200 and "no stored event" in result.output


def test_malformed_stored_data_is_reported_not_crashed_on(app, runner):
    from admin.models import Contribution, StripeEvent

    ppid = int(_add(runner).output.strip())
    db.session.add(
        StripeEvent(
            processor_id=ppid,
            event_id="evt_broken",
            type="invoice.payment_succeeded",
            raw='{"id": "evt_broken", "trunc',
            status="error",
        )
    )
    db.session.add(
        Contribution(processor_id=ppid, amount="12.50", currency="usd", trxn_id="ch_str")
    )  # SQLite takes it
    db.session.commit()
    raw = runner.invoke(args=["events", "list", "--output", "raw"])
    assert raw.exit_code == 0, raw.output
    (row,) = json.loads(raw.output)
    assert row["raw"] is None and "not valid JSON" in row["raw_error"]
    table = runner.invoke(args=["contributions", "list"])
    assert table.exit_code == 0 and "(not an amount)" in table.output


def test_commands_print_only_paydesks_own_messages(app, tmp_path):
    """No library log lines (alembic's plugin announcements, migration steps) before paydesk's output."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    env.update(
        PAYDESK_DATABASE_URL=f"sqlite:///{tmp_path / 'quiet.sqlite3'}",
        PAYDESK_SECRET_KEY="k",
        PAYDESK_ENCRYPTION_KEY="e",
    )

    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    for args in (["db", "upgrade"], ["processor", "list"], ["user", "list", "--format", "json"]):
        done = flask(*args)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", f"{args}: {done.stderr}"
    assert flask("processor", "list").stdout.strip() == "(none)"


def test_stripe_unreachable_is_one_line(app, runner, offline_processor):
    """events list --source stripe against a Stripe that cannot be reached (a closed port): one line."""
    result = runner.invoke(args=["events", "list", "--source", "stripe"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Stripe: ") and "Could not reach Stripe" in lines[0]


# -- the database: the README's URL forms, a fresh clone, one that cannot be opened ----------------


def _flask(cwd, url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """``flask --app wsgi ARGS`` as someone runs it from ``cwd`` (keys given, so instance/ is not touched)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    env.update(PAYDESK_DATABASE_URL=url, PAYDESK_SECRET_KEY="s", PAYDESK_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", str(ROOT / "wsgi.py"), *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1 and done.stdout == "", done.stdout + done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("Error: "), done.stderr
    return done.stderr


def test_a_relative_sqlite_path_is_read_from_the_current_directory(tmp_path):
    """The README's form, ``sqlite:///instance/demo.sqlite3``, run from the project's folder."""
    (tmp_path / "instance").mkdir()
    url = "sqlite:///instance/demo.sqlite3"
    upgraded = _flask(tmp_path, url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "instance" / "demo.sqlite3").stat().st_size > 0
    listed = _flask(tmp_path, url, "contributions", "list")
    assert (listed.returncode, listed.stdout.strip(), listed.stderr) == (0, "(none)", "")
    # no processor yet: said in one line, as for any other refusal
    assert "processor" in _one_error_line(_flask(tmp_path, url, "reconcile", "--days", "7"))


def test_a_fresh_clone_is_told_to_run_db_upgrade_and_no_empty_database_is_made(tmp_path):
    url = f"sqlite:///{tmp_path / 'paydesk.sqlite3'}"
    for args in (
        ["contributions", "list"],
        ["reconcile", "--days", "7"],
        ["worker", "--once"],
        ["events", "retry-all"],
    ):
        line = _one_error_line(_flask(tmp_path, url, *args))
        assert "run `flask --app wsgi db upgrade`" in line and str(tmp_path / "paydesk.sqlite3") in line, line
        assert not (tmp_path / "paydesk.sqlite3").exists(), args
    assert _flask(tmp_path, url, "contributions", "list", "--help").returncode == 0  # help needs no database


def test_a_database_without_tables_is_told_to_run_db_upgrade(tmp_path):
    (tmp_path / "empty.sqlite3").write_bytes(b"")
    line = _one_error_line(_flask(tmp_path, f"sqlite:///{tmp_path / 'empty.sqlite3'}", "processor", "list"))
    assert "has no paydesk tables yet: run `flask --app wsgi db upgrade`" in line


@pytest.mark.parametrize(
    "args",
    [
        ["reconcile", "--days", "7"],
        ["contributions", "list"],
        ["db", "upgrade"],
        ["worker", "--once"],
        ["user", "create", "--email", "a@example.org", "--password-stdin"],
    ],
)
def test_a_database_that_cannot_be_opened_is_one_line_never_a_traceback(tmp_path, args):
    line = _one_error_line(
        _flask(tmp_path, "sqlite:///no/such/folder/paydesk.sqlite3", *args, stdin="long enough pw\n")
    )
    assert f"the folder {tmp_path / 'no/such/folder'} does not exist" in line, line


@pytest.mark.parametrize(
    "args", [["reconcile"], ["payments", "list"], ["db", "upgrade"], ["worker", "--once"]]
)
def test_a_database_server_that_cannot_be_reached_is_one_line_never_a_traceback(tmp_path, args):
    from conftest import free_port

    line = _one_error_line(_flask(tmp_path, f"postgresql://paydesk:hunter2@127.0.0.1:{free_port()}/x", *args))
    assert "cannot reach the database postgresql://paydesk:***@127.0.0.1" in line and "hunter2" not in line
