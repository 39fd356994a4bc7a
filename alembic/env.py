"""Alembic environment: migrations are plain SQL through op.execute; no ORM metadata."""

from __future__ import annotations

from logging.config import fileConfig

from sqlalchemy import create_engine, pool

from alembic import context
from python_jobs.warehouse.db import database_url, sqlalchemy_url
from python_jobs.warehouse.migrate import has_citus

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations_offline() -> None:
    url = config.attributes.get("url") or database_url()
    context.configure(url=sqlalchemy_url(url), literal_binds=True, version_table_schema="public")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.attributes.get("url") or database_url()
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        citus = has_citus(connection)
        connection.commit()
        # On Citus each migration commits by itself: one that makes or drops a type (0021) must
        # not follow another's parallel changes of distributed tables in its transaction
        context.configure(
            connection=connection, version_table_schema="public", transaction_per_migration=citus
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
