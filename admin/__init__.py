"""paydesk: see, repair and act on everything Stripe does for an organisation."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask

from admin.config import VERSION, DefaultConfig, env_overrides

__version__ = VERSION


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Application factory. No work happens at import time."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(DefaultConfig)
    app.config.from_pyfile("config.py", silent=True)
    app.config.update(env_overrides())
    if config:
        app.config.update(config)
    os.makedirs(app.instance_path, exist_ok=True)
    _init_logging(app)

    from admin.keys import ensure_keys

    ensure_keys(app)

    from admin.dbutil import resolve_sqlite_url

    # A relative SQLite path is read from the current directory, as sqlite3 and every other tool read it
    # (Flask-SQLAlchemy would look for it inside instance/); unset: paydesk.sqlite3 in the instance folder.
    url = resolve_sqlite_url(
        app.config.get("DATABASE_URL") or "sqlite:///" + os.path.join(app.instance_path, "paydesk.sqlite3")
    )
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    engine_options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    # SQL errors and logs never carry parameter values (webhook bodies, emails, secrets).
    engine_options.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine_options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
    # No pool_pre_ping: a connection idle for a while is pinged on checkout (extensions._ping_if_idle); one
    # used moments ago is not (a ping was a round trip per transaction).
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options
    if not app.config.get("OUTBOX_DIR"):
        app.config["OUTBOX_DIR"] = os.path.join(app.instance_path, "outbox")

    _init_proxies(app)

    from admin.services.core import retention

    retention.check_config(app.config)  # a retention setting that would delete by accident stops the start
    _init_extensions(app)

    from admin.worker.registries import register_all

    register_all()  # webhook handlers, job kinds, outbox runners

    from admin.services import monitoring

    monitoring.init_app(app)

    from admin.views import register_blueprints

    register_blueprints(app)

    from admin.cli import register_cli

    register_cli(app)
    return app


def _init_extensions(app: Flask) -> None:
    from admin import models  # noqa: F401  (tables must be known to db and Alembic)
    from admin.extensions import csrf, db, login_manager, migrate

    db.init_app(app)
    migrate.init_app(
        app, db, directory=os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
    )
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"

    from admin.services.notifications.changes import install as notify_on_changes

    notify_on_changes()  # record changes queue outgoing notifications in their own transaction

    @login_manager.user_loader
    def _load_user(user_id: str):
        """``<id>.<session token>`` and this browser's session row (ended, revoked or idle: signed out)."""
        from flask import session

        from admin.services.staff import sessions

        return sessions.load_user(user_id, session.get(sessions.SESSION_KEY))


def _init_logging(app: Flask) -> None:
    """paydesk's own messages at INFO; libraries (alembic, stripe, ...) only at WARNING and above."""
    json_lines = str(app.config.get("LOG_FORMAT") or "text").lower() == "json"
    if not app.debug and not app.testing and not logging.getLogger().handlers and not json_lines:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger("admin").level == logging.NOTSET:
        logging.getLogger("admin").setLevel(logging.INFO)
    # The SDK logs every request at INFO; paydesk's gateway logs what matters (failures, retries).
    # Alembic announces its plugins on import and every step of a migration at INFO.
    for name in ("stripe", "alembic", "flask_migrate"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from .services.monitoring import logs

    logs.configure(app)  # PAYDESK_LOG_FORMAT=json: one JSON object per line


def _init_proxies(app: Flask) -> None:
    """Trust X-Forwarded-For / X-Forwarded-Proto from exactly ``TRUSTED_PROXIES`` hops (default none)."""
    try:
        hops = int(app.config.get("TRUSTED_PROXIES") or 0)
    except (TypeError, ValueError):
        raise ValueError("PAYDESK_TRUSTED_PROXIES must be a number of proxy hops (0, 1, 2, ...)") from None
    if hops < 0:
        raise ValueError("PAYDESK_TRUSTED_PROXIES must be a number of proxy hops (0, 1, 2, ...)")
    app.config["TRUSTED_PROXIES"] = hops
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Flask's documented way to wrap the app in WSGI middleware
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)  # type: ignore[method-assign]
