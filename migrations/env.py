"""Alembic environment for paydesk (driven by Flask-Migrate: ``flask --app wsgi db ...``).

- SQLite runs every migration in batch mode (``render_as_batch``), because
  SQLite cannot ALTER most things in place; Alembic copies the table instead.
- ``compare_type`` makes autogenerate notice column type changes.
- An autogenerate that finds no change writes no empty revision.
- SQLAlchemy cannot reflect SQLite's expression indexes (the list pages' ``coalesce(date, created_at)``
  ones): a batch migration that copies such a table says so once per index. The migrations that copy a
  table put those indexes back themselves, so the warning is noise on ``db upgrade`` and is silenced.
"""

import logging
import warnings
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy.exc import SAWarning

warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index",
                        category=SAWarning)

config = context.config

# Only set up logging from alembic.ini when nobody has (a bare CLI run).
# disable_existing_loggers=False: never silence the app's loggers (or pytest's caplog).
if config.config_file_name is not None and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url() -> str:
    return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")


config.set_main_option("sqlalchemy.url", get_engine_url())
target_db = current_app.extensions["migrate"].db


def get_metadata():
    if hasattr(target_db, "metadatas"):
        return target_db.metadatas[None]
    return target_db.metadata


def _configure_args(dialect_name: str) -> dict:
    args = dict(current_app.extensions["migrate"].configure_args)
    args.setdefault("compare_type", True)
    args.setdefault("render_as_batch", dialect_name == "sqlite")
    return args


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``flask db upgrade --sql``)."""
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=get_metadata(), literal_binds=True,
                      **_configure_args(url.split(":", 1)[0].split("+", 1)[0]))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    def process_revision_directives(context, revision, directives):
        # No empty revision when autogenerate finds nothing to do.
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    connectable = get_engine()
    with connectable.connect() as connection:
        conf_args = _configure_args(connection.dialect.name)
        conf_args.setdefault("process_revision_directives", process_revision_directives)
        context.configure(connection=connection, target_metadata=get_metadata(), **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
