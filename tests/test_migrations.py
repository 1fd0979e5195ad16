"""The Alembic chain in migrations/: empty -> head -> base on SQLite and PostgreSQL,
and no drift between the newest revision and admin/models/.

The PostgreSQL runs use their own scratch database on the test server (created
and dropped here), so they always start from an empty schema.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import PG_URL, ROOT, database_url, make_app
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, inspect, select

from admin.extensions import db

MIGRATIONS = ROOT / "migrations"


@pytest.fixture
def scratch_url(backend, tmp_path: Path):
    """An empty database for this test: a SQLite file, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    database_url("postgresql", tmp_path)  # skips (and says why) when PostgreSQL is unreachable
    import psycopg

    name = f"paydesk_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield re.sub(r"/[^/]*$", "/" + name, PG_URL)
    finally:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def migrated_app(scratch_url, tmp_path):
    app = make_app(scratch_url, tmp_path)
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


def _tables() -> set[str]:
    return set(inspect(db.engine).get_table_names())


def _drift() -> list:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return compare_metadata(ctx, db.metadata)


def test_one_head():
    """Two people adding revisions from the same parent leave two heads; merge them (`flask db merge heads`)."""
    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    assert len(heads) == 1, (
        f"migrations/ has {len(heads)} heads {heads}: run `flask --app wsgi db merge heads`"
    )


@pytest.mark.postgres
def test_upgrade_to_head_then_downgrade_to_base(migrated_app, backend):
    assert _tables() == set()
    upgrade()
    expected = set(db.metadata.tables)
    assert expected <= _tables(), f"upgrade to head did not create {sorted(expected - _tables())}"

    downgrade(revision="base")
    assert _tables() <= {"alembic_version"}, (
        f"downgrade to base left {sorted(_tables() - {'alembic_version'})}"
    )

    upgrade()  # and the chain still applies after a full round trip
    assert expected <= _tables()


@pytest.mark.postgres
def test_models_match_migrations(migrated_app, backend):
    upgrade()
    diff = _drift()
    assert not diff, (
        "admin/models/ differs from the schema the migrations build. Write a revision with\n"
        "    .venv/bin/flask --app wsgi db migrate -m 'describe the change'\n"
        "review it, and commit it. Differences found:\n  " + "\n  ".join(repr(d) for d in diff)
    )


@pytest.mark.postgres
def test_upgraded_schema_takes_data(migrated_app, backend):
    """A processor and a queued event can be written into the migrated (not create_all) schema."""
    from admin.models import StripeEvent
    from admin.services.settings.processors import add_processor
    from admin.webhooks.ingest import store_event

    upgrade()
    proc = add_processor(name="migrated", secret_key="sk_test_migrated", webhook_secrets=["whsec_x"])
    event = {
        "id": "evt_migrated_1",
        "type": "customer.created",
        "created": 1,
        "livemode": False,
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }
    store_event(proc, event)
    store_event(proc, event)
    # One row however often it arrives: the unique constraint came from the migration.
    assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 1


def test_drift_is_detected(migrated_app):
    """The drift check really fails when a model gains a column no migration adds."""
    import sqlalchemy as sa

    upgrade()
    table = db.metadata.tables["contact"]
    col = sa.Column("drift_probe", sa.String(10))
    table.append_column(col)
    try:
        diff = _drift()
    finally:
        table._columns.remove(col)
    assert any(d[0] == "add_column" and d[3].name == "drift_probe" for d in diff), diff


@pytest.mark.postgres
def test_session_token_migration_keeps_existing_staff(migrated_app, backend):
    """Users made before the upgrade get a session token each (their old sessions end once); the
    per-user failure counters go, and come back empty on a downgrade."""
    from sqlalchemy import text

    upgrade(revision="391b44f483a6")
    with db.engine.begin() as conn:
        for n in (1, 2):
            conn.execute(
                text(
                    'INSERT INTO "user" (email, password_hash, role, active, failed_logins, created_at) '
                    "VALUES (:e, 'h', 'admin', :t, 3, CURRENT_TIMESTAMP)"
                ),
                {"e": f"u{n}@example.org", "t": True},
            )
        conn.execute(
            text(
                "INSERT INTO rate_limit (key, count, window_start) VALUES "
                "('login-email:u1@example.org', 2, CURRENT_TIMESTAMP), "
                "('donate-card:fp_1', 1, CURRENT_TIMESTAMP)"
            )
        )
    upgrade(revision="662c014f2453")
    with db.engine.connect() as conn:
        tokens = [r[0] for r in conn.execute(text('SELECT session_token FROM "user" ORDER BY id'))]
        keys = {r[0] for r in conn.execute(text("SELECT key FROM rate_limit"))}
    assert len(tokens) == 2 and all(t and len(t) >= 40 for t in tokens) and tokens[0] != tokens[1]
    assert keys == {"donate-card:fp_1"}
    columns = {c["name"] for c in inspect(db.engine).get_columns("user")}
    assert "session_token" in columns and not {"failed_logins", "locked_until"} & columns

    downgrade(revision="391b44f483a6")
    with db.engine.connect() as conn:
        assert [r[0] for r in conn.execute(text('SELECT failed_logins FROM "user"'))] == [0, 0]


@pytest.mark.postgres
def test_payment_trxn_id_becomes_the_charge_id(migrated_app, backend):
    """9a7d3c5e1f20: existing refund rows take their charge id as trxn_id (the seeds' FAQ), keep their re_ id
    in refund_id, each refund and each charge stays unique, and a downgrade gives the old ids back."""
    import sqlalchemy as sa
    from sqlalchemy import text

    upgrade(revision="b4c8e2a6d0f1")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO payment_processor (id, name, mode, secret_key_enc, is_default, active, "
                "created_at, updated_at) VALUES (1, 'p', 'test', 'x', :t, :t, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            ),
            {"t": True},
        )
        conn.execute(
            text(
                "INSERT INTO contribution (id, processor_id, amount, currency, status, trxn_id, fee_amount, "
                "net_amount, refunded_amount, created_at, updated_at) VALUES (1, 1, 5000, 'usd', "
                "'Partially refunded', 'ch_1', 0, 0, 3000, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        for pid, trxn, refund, amount in (
            (1, "ch_1", None, 5000),
            (2, "re_a", "re_a", -1000),
            (3, "re_b", "re_b", -2000),
        ):
            conn.execute(
                text(
                    "INSERT INTO payment (id, contribution_id, processor_id, trxn_id, charge_id, refund_id, "
                    "amount, fee, net, currency, status, created_at) VALUES (:id, 1, 1, :trxn, 'ch_1', "
                    ":refund, :amount, 0, :amount, 'usd', 'Completed', CURRENT_TIMESTAMP)"
                ),
                {"id": pid, "trxn": trxn, "refund": refund, "amount": amount},
            )
    upgrade()
    rows = "SELECT id, trxn_id, refund_id FROM payment ORDER BY id"
    with db.engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text(rows))] == [
            (1, "ch_1", None),
            (2, "ch_1", "re_a"),
            (3, "ch_1", "re_b"),
        ]
    insert = text(
        "INSERT INTO payment (contribution_id, processor_id, trxn_id, charge_id, refund_id, amount, fee, "
        "net, currency, status, created_at) VALUES (1, 1, 'ch_1', 'ch_1', :refund, 1, 0, 1, 'usd', "
        "'Completed', CURRENT_TIMESTAMP)"
    )
    for refund in (None, "re_a"):  # the charge a second time; a refund a second time
        with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
            conn.execute(insert, {"refund": refund})
    downgrade(revision="b4c8e2a6d0f1")
    with db.engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text(rows))] == [
            (1, "ch_1", None),
            (2, "re_a", "re_a"),
            (3, "re_b", "re_b"),
        ]
