"""Shared fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``NEXUS_TEST_POSTGRES_URL`` (a server URL; each test session creates
its own throwaway databases there). Without it PostgreSQL tests skip with a visible reason;
with ``CI=true`` a missing server is an error instead of a skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from nexus.storage import migrate
from nexus.storage.engine import create_engine, resolve_database_url
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import RetryPolicy, WorkQueue

PG_ENV = "NEXUS_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_server_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        reason = f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1/postgres)"
        if _in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    return resolve_database_url(url)


class PostgresServer:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, url: str) -> None:
        self.url = sa.engine.make_url(url)
        self.admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create_database(self) -> str:
        name = f"nexus_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    url = postgres_server_url()
    server = PostgresServer(url)
    try:
        with server.admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL at {PG_ENV} is not answering: {exc.orig}"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "metadata.db"
    engine = create_engine(resolve_database_url(path))
    migrate.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_migrated_url(pg_server: PostgresServer) -> str:
    url = pg_server.create_database()
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def _truncate_postgres(url: str) -> None:
    """Empty every table. DELETE with triggers and foreign keys off (replica role) is much
    faster than TRUNCATE on tiny tables and needs no exclusive lock."""
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = (
            conn.execute(
                sa.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename <> 'alembic_version'"
                )
            )
            .scalars()
            .all()
        )
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for table in tables:
            conn.exec_driver_sql(f'DELETE FROM "{table}"')
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of the parametrized backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "metadata.db"
        shutil.copyfile(template, target)
        return resolve_database_url(target)
    url: str = request.getfixturevalue("pg_migrated_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def fresh_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database with no schema at all."""
    if backend == "sqlite":
        return resolve_database_url(tmp_path / "fresh.db")
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database()


@pytest.fixture
def store(db_url: str) -> Iterator[SQLAlchemyMetadataStore]:
    with SQLAlchemyMetadataStore(db_url) as opened:
        yield opened


@pytest.fixture
def queue(store: SQLAlchemyMetadataStore) -> Iterator[WorkQueue]:
    """A work queue over ``store`` (closed at teardown, before the store)."""
    opened = WorkQueue(store)
    yield opened
    opened.close()


@pytest.fixture
def make_store(db_url: str) -> Iterator[Callable[..., SQLAlchemyMetadataStore]]:
    """Open more stores on the same database (other tenants, other 'processes')."""
    opened: list[SQLAlchemyMetadataStore] = []

    def factory(**kwargs: object) -> SQLAlchemyMetadataStore:
        new = SQLAlchemyMetadataStore(db_url, **kwargs)  # type: ignore[arg-type]
        opened.append(new)
        return new

    yield factory
    for item in opened:
        item.close()


@pytest.fixture
def make_queue(
    make_store: Callable[..., SQLAlchemyMetadataStore],
) -> Iterator[Callable[..., WorkQueue]]:
    """``make_queue(retry_policy=None, **store_kwargs)``: a work queue over a new store on the
    same database (another worker, another tenant); queues close before their stores."""
    opened: list[WorkQueue] = []

    def factory(*, retry_policy: RetryPolicy | None = None, **kwargs: object) -> WorkQueue:
        new = WorkQueue(make_store(**kwargs), retry_policy=retry_policy)
        opened.append(new)
        return new

    yield factory
    for item in opened:
        item.close()


@pytest.fixture
def raw_engine(db_url: str) -> Iterator[sa.Engine]:
    """A plain engine on the test database, for writing rows with plain SQL."""
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def add_item(store: SQLAlchemyMetadataStore) -> Callable[..., str]:
    """``add_item(path, status=None, **metadata) -> path_id``: put a path on ``store`` and set
    its work metadata (status first, then the other keys in the order given)."""

    def add(path: str, status: str | None = None, **meta: object) -> str:
        record = store.put(path)
        if status is not None:
            store.set_file_metadata(path, "status", status)
        for key, value in meta.items():
            store.set_file_metadata(path, key, value)
        return record.path_id

    return add


@pytest.fixture
def store_pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[SQLAlchemyMetadataStore, SQLAlchemyMetadataStore]]:
    """``(sqlite_store, postgres_store)``: the same empty schema on both databases at once, for
    tests that compare their results directly (not parametrized; skips without PostgreSQL)."""
    template: Path = request.getfixturevalue("sqlite_template")
    target = tmp_path / "pair.db"
    shutil.copyfile(template, target)
    pg_url: str = request.getfixturevalue("pg_migrated_url")
    _truncate_postgres(pg_url)
    with (
        SQLAlchemyMetadataStore(resolve_database_url(target)) as lite,
        SQLAlchemyMetadataStore(pg_url) as pg,
    ):
        yield lite, pg


# Fixtures that need the PostgreSQL server, whether a test names them or a fixture it uses
# asks for them.
POSTGRES_FIXTURES = frozenset({"pg_server", "pg_migrated_url", "store_pair"})


def needs_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    # The backend parameter, or another parameter standing for it (read-only flavours...).
    if callspec is not None and any(
        isinstance(value, str) and value == "postgresql" for value in callspec.params.values()
    ):
        return True
    return bool(POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs PostgreSQL carries the ``postgresql`` mark, so that ``-m
    postgresql`` and ``-k postgresql`` (which matches marks too) select all of them, also the
    ones that are not parametrized over the backend."""
    for item in items:
        if needs_postgres(item):
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture(autouse=True)
def _postgres_tests_carry_the_mark(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that reaches the server only at run time (``request.getfixturevalue``) without
    a ``postgresql`` parameter or mark errors, so that ``-k``/``-m postgresql`` stay whole."""
    yield
    used = POSTGRES_FIXTURES & set(request.fixturenames)
    if used and request.node.get_closest_marker("postgresql") is None:
        pytest.fail(
            f"uses {', '.join(sorted(used))} but is not selected by -k/-m postgresql:"
            " parametrize it over the backend or mark it postgresql",
            pytrace=False,
        )
