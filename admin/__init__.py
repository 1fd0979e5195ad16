"""paydesk: see, repair and act on everything Stripe does for an organisation."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask

from .config import VERSION, DefaultConfig, env_overrides

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

    url = app.config.get("DATABASE_URL") or "sqlite:///" + os.path.join(app.instance_path, "paydesk.sqlite3")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    engine_options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if url.startswith("sqlite"):
        engine_options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
    else:
        engine_options.setdefault("pool_pre_ping", True)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options
    if not app.config.get("OUTBOX_DIR"):
        app.config["OUTBOX_DIR"] = os.path.join(app.instance_path, "outbox")

    _init_logging(app)
    _init_extensions(app)

    from .views import register_blueprints

    register_blueprints(app)

    from .cli import register_cli

    register_cli(app)
    return app


def _init_extensions(app: Flask) -> None:
    from . import models  # noqa: F401  (tables must be known to db and Alembic)
    from .extensions import csrf, db, login_manager, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"

    @login_manager.user_loader
    def _load_user(user_id: str):
        return db.session.get(models.User, int(user_id))


def _init_logging(app: Flask) -> None:
    if not app.debug and not app.testing and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The SDK logs every request at INFO; paydesk's gateway logs what matters (failures, retries).
    logging.getLogger("stripe").setLevel(logging.WARNING)
    # Alembic announces each of its plugins at INFO whenever Flask-Migrate loads it (every command).
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
