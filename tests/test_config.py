"""create_app configuration: defaults < instance/config.py < PAYDESK_* environment < create_app(config)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from admin import create_app
from admin.config import env_overrides
from admin.extensions import db


@pytest.fixture
def instance_dir(tmp_path, monkeypatch):
    """Point Flask's instance folder at a temporary directory and clear PAYDESK_* variables."""
    folder = tmp_path / "instance"
    folder.mkdir()
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: str(folder))
    for key in list(os.environ):
        if key.startswith("PAYDESK_") and not key.startswith("PAYDESK_TEST_"):
            monkeypatch.delenv(key)
    return folder


def test_factory_with_test_config(instance_dir):
    app = create_app({"TESTING": True, "SECRET_KEY": "s3cret", "DATABASE_URL": "sqlite://"})
    assert app.testing and app.config["SECRET_KEY"] == "s3cret"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite://"
    assert app.instance_path == str(instance_dir)
    assert app.config["OUTBOX_DIR"] == str(instance_dir / "outbox")
    assert "processor" in app.cli.commands and "user" in app.cli.commands
    assert "webhooks.receive" in app.view_functions


def test_defaults_without_any_config(instance_dir):
    app = create_app()
    assert not app.testing
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{instance_dir / 'paydesk.sqlite3'}"
    assert app.config["STRIPE_JS_URL"] == "https://js.stripe.com/v3/"
    assert app.config["SMTP_URL"] is None
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True


def test_instance_config_is_read(instance_dir):
    (instance_dir / "config.py").write_text('SITE_NAME = "From instance"\nSTRIPE_MAX_ATTEMPTS = 9\n')
    app = create_app({"DATABASE_URL": "sqlite://"})
    assert app.config["SITE_NAME"] == "From instance"
    assert app.config["STRIPE_MAX_ATTEMPTS"] == 9


def test_precedence_defaults_instance_env_argument(instance_dir, monkeypatch):
    (instance_dir / "config.py").write_text(
        'SITE_NAME = "From instance"\nBASE_URL = "https://instance.example"\n'
        'RECEIPT_FROM = "instance@example.org"\n'
    )
    monkeypatch.setenv("PAYDESK_SITE_NAME", "From env")
    monkeypatch.setenv("PAYDESK_BASE_URL", "https://env.example")
    app = create_app({"DATABASE_URL": "sqlite://", "BASE_URL": "https://argument.example"})
    assert app.config["RECEIPT_FROM"] == "instance@example.org"  # instance beats the default
    assert app.config["SITE_NAME"] == "From env"  # environment beats instance/config.py
    assert app.config["BASE_URL"] == "https://argument.example"  # create_app(config) beats everything


def test_env_values_are_json_decoded(instance_dir, monkeypatch):
    monkeypatch.setenv("PAYDESK_STRIPE_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("PAYDESK_SESSION_COOKIE_SECURE", "true")
    monkeypatch.setenv("PAYDESK_SECRET_KEY", "not-json-just-a-string")
    monkeypatch.setenv("PAYDESK_TEST_POSTGRES_URL", "postgresql://ignored")
    app = create_app({"DATABASE_URL": "sqlite://"})
    assert app.config["STRIPE_MAX_ATTEMPTS"] == 7
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SECRET_KEY"] == "not-json-just-a-string"
    assert "TEST_POSTGRES_URL" not in app.config


def test_env_overrides_only_takes_paydesk_prefix():
    assert env_overrides({"PAYDESK_A": "1", "OTHER": "2", "PAYDESK_TEST_X": "3", "PAYDESK_B": "[1, 2]"}) == {
        "A": 1,
        "B": [1, 2],
    }


def test_database_url_from_env_and_postgres_driver(instance_dir, monkeypatch):
    monkeypatch.setenv("PAYDESK_DATABASE_URL", "postgresql://paydesk@db.internal:5432/paydesk")
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://paydesk@db.internal:5432/paydesk"
    # a dead pooled connection is replaced by extensions._ping_if_idle (tests/test_pool_ping.py), not a ping
    # per checkout
    assert "pool_pre_ping" not in app.config["SQLALCHEMY_ENGINE_OPTIONS"]


def test_sqlite_pragmas_are_on(instance_dir, tmp_path):
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite3'}"})
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        db.session.rollback()
        db.create_all()
        from admin.models import StripeCustomer

        db.session.add(StripeCustomer(customer_id="cus_x", contact_id=999, processor_id=999))
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            db.session.commit()
        db.session.rollback()
        db.engine.dispose()


def test_encryption_key_protects_stored_secrets(instance_dir, tmp_path):
    from admin.crypto import SecretDecryptError
    from admin.models import PaymentProcessor
    from admin.services.settings.processors import add_processor

    url = f"sqlite:///{tmp_path / 'enc.sqlite3'}"
    first = create_app({"TESTING": True, "DATABASE_URL": url, "ENCRYPTION_KEY": "key-one"})
    with first.app_context():
        db.create_all()
        add_processor(name="p", secret_key="sk_test_secretvalue", webhook_secrets=["whsec_abc"])
        db.engine.dispose()
    second = create_app({"TESTING": True, "DATABASE_URL": url, "ENCRYPTION_KEY": "key-two"})
    with second.app_context():
        proc = db.session.get(PaymentProcessor, 1)
        assert "sk_test_secretvalue" not in proc.secret_key_enc
        with pytest.raises(SecretDecryptError, match="PAYDESK_ENCRYPTION_KEY"):
            _ = proc.secret_key
        db.engine.dispose()


# -- keys: no fixed fallback, generated once into instance/, independent of each other ---------


def test_without_a_secret_key_one_is_generated_into_instance_readable_by_its_owner(instance_dir, caplog):
    from admin.config import DefaultConfig

    assert DefaultConfig.SECRET_KEY is None and DefaultConfig.ENCRYPTION_KEY is None
    first = create_app({"DATABASE_URL": "sqlite://"})
    key_file, enc_file = instance_dir / "secret_key", instance_dir / "encryption_key"
    assert first.config["SECRET_KEY"] == key_file.read_text().strip()
    assert len(first.config["SECRET_KEY"]) >= 40
    assert first.config["ENCRYPTION_KEY"] == enc_file.read_text().strip()
    assert first.config["ENCRYPTION_KEY"] != first.config["SECRET_KEY"]
    for f in (key_file, enc_file):
        assert oct(f.stat().st_mode & 0o777) == "0o600", f"{f.name} must be readable by its owner only"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("PAYDESK_SECRET_KEY is not set" in w for w in warnings), warnings
    assert any("PAYDESK_ENCRYPTION_KEY is not set" in w for w in warnings), warnings
    assert not any(first.config["SECRET_KEY"] in w for w in warnings), "the key itself is never logged"
    # every later start (every gunicorn worker, the worker, the CLI) uses the same keys, without a word
    caplog.clear()
    again = create_app({"DATABASE_URL": "sqlite://"})
    assert (again.config["SECRET_KEY"], again.config["ENCRYPTION_KEY"]) == (
        first.config["SECRET_KEY"],
        first.config["ENCRYPTION_KEY"],
    )
    assert not [r.getMessage() for r in caplog.records if r.name == "admin.keys"]


def test_commands_do_not_repeat_the_key_warning(instance_dir, tmp_path):
    """``flask --app wsgi --help`` (or any command) once the keys exist: nothing but the help."""
    create_app({"DATABASE_URL": "sqlite://"})  # the first start generates the keys
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    code = (
        "import sys; from flask import Flask; folder = sys.argv.pop(1); "
        "Flask.auto_find_instance_path = lambda self: folder; from flask.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(instance_dir), "--app", "wsgi", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "Usage:" in done.stdout, done.stderr
    assert done.stderr == "", done.stderr


def test_configured_keys_are_used_and_nothing_is_written(instance_dir):
    app = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "configured", "ENCRYPTION_KEY": "enc"})
    assert (app.config["SECRET_KEY"], app.config["ENCRYPTION_KEY"]) == ("configured", "enc")
    assert not (instance_dir / "secret_key").exists() and not (instance_dir / "encryption_key").exists()


def test_processes_starting_together_agree_on_the_generated_key(instance_dir):
    import threading

    from admin.keys import _read_or_create

    path = str(instance_dir / "raced_key")
    seen: list[str] = []
    barrier = threading.Barrier(8)

    def start():
        barrier.wait()
        seen.append(_read_or_create(path, lambda: os.urandom(16).hex())[0])

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and len(set(seen)) == 1
    assert [p.name for p in instance_dir.iterdir() if p.name.startswith("raced_key")] == ["raced_key"]


def test_a_cookie_signed_with_the_old_public_default_signs_nobody_in(instance_dir, tmp_path):
    """The fixed value that used to be the default: a session forged with it is worthless now."""
    from flask.sessions import SecureCookieSessionInterface

    from admin.services.staff.users import create_user

    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'forge.sqlite3'}"})
    with app.app_context():
        db.create_all()
        user = create_user("admin@example.org", "correct horse battery", "admin")
        forged_app = Flask("forger")
        forged_app.secret_key = "dev-only-change-me"
        serializer = SecureCookieSessionInterface().get_signing_serializer(forged_app)
        for user_id in (str(user.id), user.get_id()):  # with or without knowing the session token
            cookie = serializer.dumps({"_user_id": user_id, "_fresh": True})
            client = app.test_client()
            client.set_cookie("session", cookie)
            assert client.get("/").status_code == 302
        db.session.remove()
        db.engine.dispose()


def test_rotating_the_secret_key_keeps_stored_stripe_secrets_readable(instance_dir, tmp_path):
    from admin.models import PaymentProcessor
    from admin.services.settings.processors import add_processor

    url = f"sqlite:///{tmp_path / 'rotate.sqlite3'}"
    first = create_app({"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": "old secret key"})
    with first.app_context():
        db.create_all()
        add_processor(name="p", secret_key="sk_test_rotation_survives", webhook_secrets=["whsec_rot"])
        db.engine.dispose()
    second = create_app({"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": "new secret key"})
    with second.app_context():
        proc = db.session.get(PaymentProcessor, 1)
        assert proc.secret_key == "sk_test_rotation_survives" and proc.webhook_secrets == ["whsec_rot"]
        db.session.remove()
        db.engine.dispose()


@pytest.mark.postgres_only  # SQLite stores an over-long string without complaint
def test_database_errors_never_carry_the_values(app, backend):
    """hide_parameters: an error (and any log of it) shows the SQL, never the parameter values sent with it.
    (PostgreSQL's own DETAIL line may quote a conflicting key; paydesk's messages keep the first line only.)"""
    from sqlalchemy.exc import StatementError

    from admin.models import User

    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["hide_parameters"] is True
    marker = "secret-value-MARKER"
    db.session.add(
        User(email=marker, password_hash=marker, role=marker, session_token=marker)
    )  # role: 16 max
    with pytest.raises(StatementError) as err:
        db.session.commit()
    db.session.rollback()
    assert "parameters hidden" in str(err.value) and marker not in str(err.value)
