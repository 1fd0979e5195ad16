"""Shared fixtures: app (SQLite, and PostgreSQL for tests marked ``postgres``),
client, CLI runner, signed-in clients, a real localstripe server, processors.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from admin import create_app
from admin.extensions import db
from admin.tally import flush_app

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("PAYDESK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WEBHOOK_SECRET = "whsec_test_paydesk_primary"
PASSWORD = "correct horse battery"
TEST_ENCRYPTION_KEY = "Rk9SVEVTVFNPTkxZLXBheWRlc2stZW5jcnlwdGlvbi0="  # a Fernet key, tests only

_pg_state: dict[str, str | None] = {"url": None, "why": None, "checked": None}


def _postgres_url() -> str | None:
    """A fresh database for this test session on the PostgreSQL server, or None (with the reason kept)."""
    if _pg_state["checked"]:
        return _pg_state["url"]
    _pg_state["checked"] = "yes"
    if os.environ.get("PAYDESK_TEST_POSTGRES", "1") == "0":
        _pg_state["why"] = "PAYDESK_TEST_POSTGRES=0"
        return None
    try:
        import psycopg

        dbname = f"paydesk_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        _pg_state["url"] = re.sub(r"/[^/]*$", "/" + dbname, PG_URL)
        _pg_state["dbname"] = dbname
    except Exception as exc:
        _pg_state["why"] = f"{PG_URL} not reachable ({type(exc).__name__}: {str(exc).strip()[:120]})"
    return _pg_state["url"]


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker
        backends = (
            ["postgresql"]
            if marker("postgres_only")
            else ["sqlite", "postgresql"]
            if marker("postgres")
            else ["sqlite"]
        )
        metafunc.parametrize("backend", backends, scope="function")


def pytest_terminal_summary(terminalreporter):
    if not _pg_state["checked"] and getattr(terminalreporter.config.option, "numprocesses", None):
        # pytest-xdist's controller runs no test: whether the workers had PostgreSQL, it asks the server itself
        try:
            import psycopg

            with psycopg.connect(PG_URL, connect_timeout=3):
                pass
            terminalreporter.write_line(
                f"PostgreSQL tests ran against {PG_URL} (a scratch database per test process, dropped)."
            )
        except Exception as exc:
            terminalreporter.write_line(
                f"POSTGRESQL TESTS SKIPPED: {PG_URL} not reachable ({type(exc).__name__}). "
                "Set PAYDESK_TEST_POSTGRES_URL to run them.",
                yellow=True,
                bold=True,
            )
        return
    if _pg_state["checked"] and not _pg_state["url"]:
        terminalreporter.write_line(
            f"POSTGRESQL TESTS SKIPPED: {_pg_state['why']}. Set PAYDESK_TEST_POSTGRES_URL to run them.",
            yellow=True,
            bold=True,
        )
    elif _pg_state["url"]:
        terminalreporter.write_line(f"PostgreSQL tests ran against {PG_URL} (scratch database, dropped).")


def pytest_sessionfinish(session):
    name = _pg_state.get("dbname")
    if name:
        try:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:
            pass


def database_url(backend: str, tmp_path: Path) -> str:
    if backend == "postgresql":
        url = _postgres_url()
        if not url:
            pytest.skip(f"PostgreSQL not available: {_pg_state['why']}")
        return url
    return f"sqlite:///{tmp_path / 'paydesk.sqlite3'}"


def make_app(url: str, tmp_path: Path, **extra):
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "DATABASE_URL": url,
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "STRIPE_BACKOFF_BASE": 0.001,
        "STRIPE_BACKOFF_MAX": 0.01,
        "WORKER_BACKOFF_BASE": 0.0,
        "LOGIN_LOCKOUT_SECONDS": 60,
        "SERVER_NAME": None,
        "STRIPE_API_BASES": ["127.0.0.1", "localhost"],  # localstripe; production allows Stripe's alone
    }
    config.update(extra)
    return create_app(config)


@pytest.fixture
def backend():  # overridden by pytest_generate_tests parametrisation
    return "sqlite"


@pytest.fixture
def app(backend, tmp_path):
    app = make_app(database_url(backend, tmp_path), tmp_path)
    with app.app_context():
        db.drop_all()
        db.create_all()
        yield app
        flush_app(app)  # refusals this test tallied: written now, not by the timer into a later test's run
        db.session.remove()
        if backend == "postgresql":
            db.drop_all()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# -- staff ----------------------------------------------------------------------


def csrf_token_from(html: str) -> str:
    m = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert m, "page carries no CSRF token"
    return m.group(1)


class Auth:
    def __init__(self, app, client):
        self.app = app
        self.client = client

    def create(self, email: str, role: str) -> None:
        from admin.services.staff.users import create_user, find_user

        if not find_user(email):
            create_user(email, PASSWORD, role)

    def login(self, email: str = "admin@example.org", role: str = "admin", password: str = PASSWORD):
        self.create(email, role)
        page = self.client.get("/login")
        token = csrf_token_from(page.get_data(as_text=True))
        return self.client.post("/login", data={"email": email, "password": password, "csrf_token": token})

    def logout(self):
        page = self.client.get("/")
        token = csrf_token_from(page.get_data(as_text=True))
        return self.client.post("/logout", data={"csrf_token": token})

    def token(self, path: str = "/") -> str:
        return csrf_token_from(self.client.get(path).get_data(as_text=True))


@pytest.fixture
def auth(app, client):
    return Auth(app, client)


# -- Stripe ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _run_localstripe():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "localstripe_server.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def localstripe():
    """A real localstripe server for the test session; yields its base URL."""
    yield from _run_localstripe()


@pytest.fixture(scope="session")
def _empty_localstripe_server():
    yield from _run_localstripe()


@pytest.fixture
def empty_localstripe(_empty_localstripe_server):
    """A localstripe of its own, emptied before each test: for tests that list or import
    *everything* Stripe has (the shared ``localstripe`` holds every other test's objects)."""
    import requests

    requests.delete(f"{_empty_localstripe_server}/_config/data", timeout=10).raise_for_status()
    return _empty_localstripe_server


@pytest.fixture
def empty_processor(app, empty_localstripe):
    """A test-mode processor on ``empty_localstripe``."""
    from admin.services.settings.processors import add_processor

    return add_processor(
        name=f"Stripe empty {uuid.uuid4().hex[:6]}",
        secret_key="sk_test_empty_" + uuid.uuid4().hex,
        publishable_key="pk_test_empty",
        webhook_secrets=[WEBHOOK_SECRET],
        api_base=empty_localstripe,
        mode="test",
        default=True,
    )


@pytest.fixture
def localstripe_wiped_after(localstripe):
    """For a test that fills localstripe with many objects: wipe its state afterwards, so the
    session's later tests (which read first pages of lists) do not page through them."""
    yield localstripe
    import requests

    requests.delete(f"{localstripe}/_config/data", timeout=10)


@pytest.fixture
def processor(app, localstripe):
    """A test-mode processor that talks to the session's localstripe."""
    from admin.services.settings.processors import add_processor

    return add_processor(
        name=f"Stripe test {uuid.uuid4().hex[:6]}",
        secret_key="sk_test_paydesk_" + uuid.uuid4().hex,
        publishable_key="pk_test_paydesk",
        webhook_secrets=[WEBHOOK_SECRET],
        api_base=localstripe,
        mode="test",
        default=True,
    )


@pytest.fixture
def offline_processor(app):
    """A processor whose API base is a closed port: every Stripe call must be mocked with ``responses``."""
    from admin.services.settings.processors import add_processor

    return add_processor(
        name="Stripe mocked",
        secret_key="sk_test_mocked",
        publishable_key="pk_test_mocked",
        webhook_secrets=[WEBHOOK_SECRET],
        api_base="http://127.0.0.1:9",
        mode="test",
        default=True,
    )


@pytest.fixture
def world(offline_processor):
    """A Stripe account behind ``responses`` (fixtures3-shaped objects) for the offline processor."""
    import responses
    from stripe_world import StripeWorld

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield StripeWorld(rsps)


@pytest.fixture
def connect_world(offline_processor):
    """``world`` plus Stripe Connect and webhook endpoints (``tests/connect_world.py``)."""
    import responses
    from connect_world import ConnectWorld

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield ConnectWorld(rsps)
