"""Alembic environment for nexus.

Two ways in:
* ``nexus`` itself (store open, ``nexus migrate``) passes an open connection in
  ``config.attributes["connection"]``, already inside a locked transaction.
* ``alembic upgrade head`` from a checkout: the URL comes from ``-x db_url=...``, else
  ``NEXUS_DATABASE_URL``, else ``./nexus-data/metadata.db``; we open it with the same engine
  settings and take the same migration lock the library takes.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context

from nexus.storage.engine import create_engine, resolve_database_url
from nexus.storage.migrate import DEFAULT_ALEMBIC_DB, migration_transaction

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=None,
        transactional_ddl=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    x_args = context.get_x_argument(as_dictionary=True)
    url = resolve_database_url(
        x_args.get("db_url") or os.environ.get("NEXUS_DATABASE_URL") or DEFAULT_ALEMBIC_DB
    )
    engine = create_engine(url)
    try:
        with engine.connect() as conn, migration_transaction(conn):
            _run(conn)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    x_args = context.get_x_argument(as_dictionary=True)
    url = resolve_database_url(
        x_args.get("db_url") or os.environ.get("NEXUS_DATABASE_URL") or DEFAULT_ALEMBIC_DB
    )
    context.configure(url=url, literal_binds=True, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
