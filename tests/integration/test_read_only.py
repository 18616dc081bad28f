"""Read-only databases, on SQLite (``mode=ro`` and ``immutable=1`` URIs, in WAL and in
rollback-journal mode) and PostgreSQL (a session with ``default_transaction_read_only``).

A read-only database whose schema is at head opens without any write and answers every read
(files, metadata, views, queue reads); every write raises ``ReadOnlyDatabaseError`` saying
"database is read-only", through the store's SQLAlchemy path and the queue's driver-level path
alike, and leaves the data as it was. A read-only database below head is not migrated: opening
it raises ``ReadOnlyMigrationError`` (both a MigrationError and a ReadOnlyDatabaseError) and its
revision is unchanged. A SQLite URI filename creates no directory in the working directory.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from nexus.errors import MigrationError, ReadOnlyDatabaseError, ReadOnlyMigrationError
from nexus.storage import migrate
from nexus.storage.engine import create_engine, resolve_database_url
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import Worker, WorkQueue

PG_READ_ONLY = "options=-c%20default_transaction_read_only%3Don"
#: (backend, SQLite URI flag) of each way of opening read-only.
FLAVOURS = {
    "sqlite-mode=ro": ("sqlite", "mode=ro"),
    "sqlite-immutable": ("sqlite", "immutable=1"),
    "postgresql": ("postgresql", ""),
}


def read_only_url(url: str, sqlite_mode: str = "mode=ro") -> str:
    """The same database, opened read-only."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite:///file:{parsed.database}?{sqlite_mode}&uri=true"
    return f"{url}{'&' if '?' in url else '?'}{PG_READ_ONLY}"


def seed(url: str) -> None:
    with SQLAlchemyMetadataStore(url) as store:
        store.put("/docs/a.txt")
        store.set_file_metadata("/docs/a.txt", "owner", "ada")
        queue = WorkQueue(store)
        queue.enqueue("/jobs/first", priority=1)
        queue.enqueue("/jobs/second", depends_on="/jobs/first")
        queue.close()


def snapshot(url: str) -> dict[str, Any]:
    with SQLAlchemyMetadataStore(url) as store:
        queue = WorkQueue(store)
        seen = {
            "paths": [r.virtual_path for r in store.list()],
            "owner": store.get_file_metadata("/docs/a.txt", "owner"),
            "ready": [r["virtual_path"] for r in store.get_ready_work()],
            "stats": queue.work_stats(),
        }
        queue.close()
        return seen


@pytest.fixture(params=list(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> tuple[str, str]:
    return FLAVOURS[request.param]


@pytest.fixture
def backend(flavour: tuple[str, str]) -> str:
    """This module's backends come from the read-only flavours."""
    return flavour[0]


@pytest.fixture
def seeded_url(db_url: str) -> str:
    seed(db_url)
    return db_url


@pytest.fixture
def read_only(seeded_url: str, flavour: tuple[str, str]) -> Iterator[WorkQueue]:
    store = SQLAlchemyMetadataStore(read_only_url(seeded_url, flavour[1] or "mode=ro"))
    queue = WorkQueue(store)
    yield queue
    queue.close()
    store.close()


def test_a_read_only_database_at_head_answers_every_read(read_only: WorkQueue) -> None:
    store = read_only.store
    assert [r.virtual_path for r in store.list()] == ["/docs/a.txt", "/jobs/first", "/jobs/second"]
    assert store.get_file_metadata("/docs/a.txt", "owner") == "ada"
    assert store.get_all_file_metadata("/jobs/first")["status"] == "ready"
    assert [r["virtual_path"] for r in store.get_ready_work()] == ["/jobs/first"]
    assert [r["virtual_path"] for r in store.get_blocked_work()] == ["/jobs/second"]
    item = read_only.get_work_item("/jobs/first")
    assert item is not None and item["status"] == "ready"
    assert read_only.work_stats()["ready"] == 1
    assert [e["event"] for e in read_only.get_work_history("/jobs/first")] == ["enqueued"]
    assert [b["path"] for b in read_only.explain_blocked("/jobs/second")] == ["/jobs/first"]


WRITES: dict[str, Callable[[WorkQueue], object]] = {
    "put": lambda q: q.store.put("/docs/b.txt"),
    "put_many": lambda q: q.store.put_many(["/docs/c.txt"]),
    "set_file_metadata": lambda q: q.store.set_file_metadata("/docs/a.txt", "owner", "bob"),
    "delete_file_metadata": lambda q: q.store.delete_file_metadata("/docs/a.txt", "owner"),
    "delete": lambda q: q.store.delete("/docs/a.txt"),
    "enqueue": lambda q: q.enqueue("/jobs/third"),
    "claim_ready_work": lambda q: q.claim_ready_work("worker-1"),
    "cancel_work": lambda q: q.cancel_work("/jobs/first"),
    "reclaim_expired_leases": lambda q: q.reclaim_expired_leases(),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_every_write_says_the_database_is_read_only(
    read_only: WorkQueue, seeded_url: str, write: str
) -> None:
    before = snapshot(seeded_url)
    with pytest.raises(ReadOnlyDatabaseError, match="database is read-only") as caught:
        WRITES[write](read_only)
    database = sa.engine.make_url(seeded_url).database
    assert database is not None and database in caught.value.url
    assert caught.value.__cause__ is not None
    assert snapshot(seeded_url) == before


def test_a_worker_on_a_read_only_database_stops_at_once(read_only: WorkQueue) -> None:
    """Waiting does not make a database writable: no write retries for write_retry_seconds."""
    started = time.monotonic()
    with pytest.raises(ReadOnlyDatabaseError):
        Worker(read_only, lambda item: None, write_retry_seconds=30).run(stop_when_idle=True)
    assert time.monotonic() - started < 10


def test_a_rollback_journal_sqlite_file_opens_read_only_and_keeps_its_mode(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    shutil.copyfile(sqlite_template, path)
    seeded_url = resolve_database_url(path)
    seed(seeded_url)
    plain = sqlite3.connect(path)
    assert plain.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    plain.close()
    with SQLAlchemyMetadataStore(read_only_url(seeded_url)) as store:
        assert store.get_file_metadata("/docs/a.txt", "owner") == "ada"
        with pytest.raises(ReadOnlyDatabaseError):
            store.put("/docs/b.txt")
    plain = sqlite3.connect(path)
    assert plain.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    plain.close()


@pytest.mark.parametrize("flavour", ["sqlite-mode=ro", "postgresql"], indirect=True)
def test_a_read_only_database_below_head_is_not_migrated(fresh_db_url: str) -> None:
    engine = create_engine(fresh_db_url)
    migrate.upgrade(engine, "0004")
    with pytest.raises(ReadOnlyMigrationError, match="database is read-only") as caught:
        SQLAlchemyMetadataStore(read_only_url(fresh_db_url))
    assert isinstance(caught.value, MigrationError)
    assert isinstance(caught.value, ReadOnlyDatabaseError)
    assert caught.value.current == "0004"
    assert caught.value.head == migrate.head_revision()
    assert migrate.current_revision(engine) == "0004"
    engine.dispose()


def test_a_sqlite_uri_filename_creates_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    target = tmp_path / "data" / "x.db"
    url = f"sqlite:///file:{target}?mode=ro&uri=true"
    assert sa.engine.make_url(resolve_database_url(url)).database == f"file:{target}"
    assert list(work.iterdir()) == []
    assert not target.parent.exists()
