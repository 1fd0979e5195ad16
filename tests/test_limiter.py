"""Flask-Limiter's counters are shared by every paydesk process: in the database by default, in Redis
when configured, never in one process's memory. Shown with the donation page's per-address limit."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from conftest import ROOT, database_url, make_app
from sqlalchemy import text

from admin.extensions import db
from admin.limiter import SQLStorage, counted_in_session
from admin.services.donations.forms import FormSettings, create_form
from admin.services.settings.processors import add_processor

LIMIT = "3 per minute"


def _app(url: str, tmp_path, **extra):
    return make_app(url, tmp_path, DONATE_RATE_LIMIT_PAGE=LIMIT, **extra)


def _seed(app) -> None:
    with app.app_context():
        db.drop_all()
        db.create_all()
        proc = add_processor(
            name="p",
            secret_key="sk_test_limits",
            publishable_key="pk_test_limits",
            webhook_secrets=["whsec_l"],
            api_base="http://127.0.0.1:9",
        )
        create_form(FormSettings(slug="spring", title="Spring", processor_id=proc.id, amounts="10"))
        db.session.remove()


def _get(app, ip: str) -> int:
    with app.app_context():
        status = app.test_client().get("/donate/spring", environ_base={"REMOTE_ADDR": ip}).status_code
        db.session.remove()
        return status


def test_default_storage_is_the_database_not_memory(app):
    storage = app.extensions["paydesk_limiter"].storage
    assert isinstance(storage, SQLStorage)


@pytest.mark.postgres
def test_two_app_instances_share_the_counters(backend, tmp_path):
    url = database_url(backend, tmp_path)
    first, second = _app(url, tmp_path), _app(url, tmp_path)
    _seed(first)
    try:
        assert [_get(first, "192.0.2.10") for _ in range(3)] == [200, 200, 200]
        assert _get(second, "192.0.2.10") == 429  # the other instance counted them
        assert _get(second, "192.0.2.11") == 200  # per address
        if backend == "postgresql":  # counters skip the WAL there: no disk flush per page view
            with first.app_context():
                assert (
                    db.session.scalar(
                        text("SELECT relpersistence FROM pg_class WHERE relname = 'limiter_counter'")
                    )
                    == "u"
                )
    finally:
        for app in (first, second):
            with app.app_context():
                if backend == "postgresql" and app is first:
                    db.drop_all()
                db.session.remove()
                db.engine.dispose()


def test_another_process_shares_the_counters(tmp_path):
    db_file = tmp_path / "shared.sqlite3"
    url = f"sqlite:///{db_file}"
    app = _app(url, tmp_path)
    _seed(app)
    script = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/tests']\n"
        "from conftest import make_app\n"
        "from pathlib import Path\n"
        f"app = make_app(sys.argv[2], Path(sys.argv[3]), DONATE_RATE_LIMIT_PAGE={LIMIT!r})\n"
        "with app.app_context():\n"
        "    c = app.test_client()\n"
        "    print([c.get('/donate/spring', environ_base={'REMOTE_ADDR': '192.0.2.20'}).status_code for _ in range(3)])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    out = subprocess.run(
        [sys.executable, "-c", script, str(ROOT), url, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[200, 200, 200]"
    assert _get(app, "192.0.2.20") == 429


def _redis_url() -> str | None:
    url = os.environ.get("PAYDESK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return url


def test_redis_storage_when_configured(tmp_path):
    url = _redis_url()
    if url is None:
        pytest.skip("no Redis reachable (set PAYDESK_TEST_REDIS_URL)")
    ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    first = _app(f"sqlite:///{tmp_path / 'a.sqlite3'}", tmp_path, RATELIMIT_STORAGE_URL=url)
    second = _app(f"sqlite:///{tmp_path / 'b.sqlite3'}", tmp_path, RATELIMIT_STORAGE_URL=url)
    _seed(first)
    _seed(second)
    assert type(first.extensions["paydesk_limiter"].storage).__name__ == "RedisStorage"
    try:
        assert [_get(first, ip) for _ in range(3)] == [200, 200, 200]
        assert _get(second, ip) == 429  # separate databases: only Redis can have told it
    finally:
        with first.app_context():
            first.extensions["paydesk_limiter"].storage.reset()


def test_sql_storage_counts_per_window_and_starts_again_when_it_ends(app):
    from sqlalchemy import update

    from admin.models import LimiterCounter

    storage = app.extensions["paydesk_limiter"].storage
    assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert storage.get("k") == 3 and storage.get_expiry("k") > 0
    db.session.execute(update(LimiterCounter).values(expires_at=1.0))  # the window is over
    db.session.commit()
    assert storage.get("k") == 0
    assert storage.incr("k", 60, amount=2) == 2
    storage.clear("k")
    assert storage.get("k") == 0 and storage.check()


def test_counted_in_session_commits_and_rolls_back_with_the_session(app):
    storage = app.extensions["paydesk_limiter"].storage
    assert storage.incr("k", 60) == 1
    with counted_in_session():
        assert storage.incr("k", 60) == 2 and storage.get("k") == 2  # read where it was written
        assert storage.get_expiry("k") > 0
    db.session.rollback()
    assert storage.get("k") == 1, "rolled back with the session's transaction"
    with counted_in_session():
        assert storage.incr("k", 60) == 2
    db.session.commit()
    assert storage.get("k") == 2


def test_page_views_are_not_counted_unless_configured(app, offline_processor):
    from sqlalchemy import func, select

    from admin.models import LimiterCounter

    create_form(FormSettings(slug="spring", title="Spring", processor_id=offline_processor.id, amounts="10"))
    client = app.test_client()
    assert all(client.get("/donate/spring").status_code == 200 for _ in range(3))
    assert (
        db.session.scalar(select(func.count()).select_from(LimiterCounter)) == 0
    )  # a page view writes nothing


@pytest.mark.postgres
def test_a_view_counted_with_its_first_transaction(app):
    """``limit_view(..., with_view=True)`` (the payment request): the counter is written in the transaction the
    view's first commit ends, so it is kept or undone with what the view wrote; an answer given before any
    commit (the limit's refusal, a 404, an early return) keeps the count, an unexpected error undoes it."""
    from flask import abort
    from sqlalchemy import func, select

    from admin.extensions import csrf
    from admin.limiter import limit_view
    from admin.models import LimiterCounter, SpentFormToken
    from admin.security import public
    from admin.timeutil import utcnow

    def write(nonce: str) -> None:
        db.session.add(SpentFormToken(nonce=nonce, spent_at=utcnow()))
        db.session.flush()

    @csrf.exempt
    @public
    def counted_view(what: str):
        if what == "missing":
            abort(404)
        if what == "early":
            return "early"
        write(what)
        if what == "fails":
            raise RuntimeError("unexpected")
        db.session.commit()
        return "written"

    app.add_url_rule("/counted/<what>", "counted", counted_view, methods=["POST"])
    limit_view(
        app,
        "counted",
        lambda: "4 per minute",
        key_func=lambda: "192.0.2.1",
        scope="counted-test",
        on_breach=lambda _limit: None,
        with_view=True,
    )
    client = app.test_client()

    def counted() -> int:
        db.session.rollback()
        return db.session.scalar(select(func.coalesce(func.sum(LimiterCounter.count), 0))) or 0

    def tokens() -> set[str]:
        return set(db.session.scalars(select(SpentFormToken.nonce)))

    assert client.post("/counted/one").get_data(as_text=True) == "written"
    assert counted() == 1 and tokens() == {"one"}
    assert client.post("/counted/early").status_code == 200 and counted() == 2
    assert client.post("/counted/missing").status_code == 404 and counted() == 3
    app.config["PROPAGATE_EXCEPTIONS"] = False
    assert client.post("/counted/fails").status_code == 500
    assert counted() == 3 and tokens() == {"one"}, "undone with the view's own write"
    assert client.post("/counted/two").status_code == 200 and counted() == 4
    assert client.post("/counted/three").status_code == 429 and counted() == 5, "the refusal is counted"
    assert tokens() == {"one", "two"}
