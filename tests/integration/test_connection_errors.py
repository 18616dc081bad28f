"""A connection that cannot be opened is a NexusConnectionError (a NexusDatabaseError) that
names the database, with its password hidden, and says why in plain words; a database the
server does not have is its subclass DatabaseNotFoundError. The driver's error is the
``__cause__``; its boilerplate (the exception class, SQLAlchemy's "Background on this error"
link) is not in the message. MigrationError is kept for a migration that ran and failed.

Every place a connection is first opened says the same: opening a store (with and without
migrations), migrating an engine, the work queue's driver connections, ``nexus.connect``,
the dashboard (tests/web/test_web_connection.py), and the CLI (one line, exit code 1)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

import nexus
from nexus.errors import (
    DatabaseNotFoundError,
    MigrationError,
    NexusConnectionError,
)
from nexus.storage import migrate
from nexus.storage.database import Database
from nexus.storage.engine import connection_error, create_engine, resolve_database_url
from nexus.storage.metadata_store import SQLAlchemyMetadataStore

PASSWORD = "s3cret-pw"
BIN = Path(sys.executable).with_name("nexus")
NEXUS = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "nexus.cli.main"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLOSED_PORT = closed_port()

# name -> (a change to the test server's URL, the error, the reason the message gives)
CASES: dict[str, tuple[Callable[[sa.URL], sa.URL], type[Exception], str]] = {
    "closed port": (
        lambda url: url.set(host="127.0.0.1", port=CLOSED_PORT),
        NexusConnectionError,
        f"connection refused: no server is accepting connections on 127.0.0.1:{CLOSED_PORT}",
    ),
    "missing database": (
        lambda url: url.set(database="nexus_no_such_database"),
        DatabaseNotFoundError,
        "the server has no database 'nexus_no_such_database'",
    ),
    "unknown role": (
        lambda url: url.set(username="nexus_no_such_role"),
        NexusConnectionError,
        "authentication failed: the server has no role 'nexus_no_such_role'",
    ),
    "unknown host": (
        lambda url: url.set(host="nexus-no-such-host.invalid"),
        NexusConnectionError,
        "host 'nexus-no-such-host.invalid' not found",
    ),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, pg_server: Any) -> tuple[str, type[Exception], str]:
    """(a URL with a password, the error expected, the whole message expected)."""
    change, error, reason = CASES[request.param]
    url = change(pg_server.url).set(password=PASSWORD)
    start = "no nexus database at" if error is DatabaseNotFoundError else "cannot connect to"
    shown = url.render_as_string(hide_password=True)
    assert PASSWORD not in shown
    return url.render_as_string(hide_password=False), error, f"{start} {shown}: {reason}"


def check(caught: pytest.ExceptionInfo[Any], error: type[Exception], message: str) -> None:
    assert type(caught.value) is error
    text = str(caught.value)
    assert text == message
    assert PASSWORD not in text and PASSWORD not in caught.value.url
    assert "Background on this error" not in text and "OperationalError" not in text
    assert not isinstance(caught.value, MigrationError)
    assert isinstance(caught.value.__cause__, psycopg.Error)


OPENERS: dict[str, Callable[[str, Path], Any]] = {
    "store": lambda url, tmp: SQLAlchemyMetadataStore(url),
    "store without migrations": lambda url, tmp: SQLAlchemyMetadataStore(
        url, run_migrations=False
    ),
    "store with create=False": lambda url, tmp: SQLAlchemyMetadataStore(url, create=False),
    "migration": lambda url, tmp: migrate.upgrade(create_engine(resolve_database_url(url))),
    "queue connection": lambda url, tmp: Database(
        create_engine(resolve_database_url(url))
    ).transaction(lambda cursor: cursor.execute("SELECT 1")),
    "nexus.connect": lambda url, tmp: nexus.connect(
        config={"database_url": url, "data_dir": str(tmp)}
    ),
}


@pytest.mark.postgresql
@pytest.mark.parametrize("opener", sorted(OPENERS))
def test_every_way_in_says_which_server_and_why(
    case: tuple[str, type[Exception], str], opener: str, tmp_path: Path
) -> None:
    url, error, message = case
    with pytest.raises(NexusConnectionError) as caught:
        OPENERS[opener](url, tmp_path)
    check(caught, error, message)


@pytest.mark.postgresql
@pytest.mark.parametrize("command", [["work", "stats"], ["db", "upgrade"], ["ls"]])
def test_the_cli_prints_one_line_and_exits_1(
    case: tuple[str, type[Exception], str], command: list[str], tmp_path: Path
) -> None:
    url, error, message = case
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    done = subprocess.run(
        [*NEXUS, *command, "--db", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr == f"Error: {error.__name__}: {message}\n"
    assert PASSWORD not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_file_that_cannot_be_opened_says_why(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database\n")
    with pytest.raises(NexusConnectionError) as caught:
        SQLAlchemyMetadataStore(text_file)
    assert str(caught.value) == f"cannot connect to {text_file}: the file is not a SQLite database"
    assert text_file.read_text() == "not a database\n"
    with pytest.raises(NexusConnectionError) as caught:
        SQLAlchemyMetadataStore(tmp_path)
    assert str(caught.value) == (
        f"cannot connect to {tmp_path}: it is a directory, not a SQLite file"
    )


@pytest.mark.parametrize(
    ("driver_message", "reason"),
    [
        (
            'connection failed: connection to server at "10.0.0.9", port 5432 failed: timeout'
            " expired",
            "timed out waiting for the server",
        ),
        (
            'connection failed: connection to server at "h", port 5432 failed: FATAL:  password'
            ' authentication failed for user "ann"',
            "authentication failed: the server rejected the password of user 'ann'",
        ),
        (
            'connection failed: connection to server at "h", port 5432 failed: FATAL:  no'
            ' pg_hba.conf entry for host "10.0.0.1", user "ann", database "db", no encryption',
            "authentication failed: the server's pg_hba.conf refuses this host and user",
        ),
        (
            'connection failed: connection to server at "h", port 5432 failed:'
            " fe_sendauth: no password supplied",
            "authentication failed: the server wants a password for user 'ann'",
        ),
        (
            'connection failed: connection to server at "h", port 5432 failed: FATAL:  sorry,'
            f" too many clients already ({PASSWORD})",
            "sorry, too many clients already (***)",
        ),
    ],
)
def test_driver_messages_become_plain_reasons(driver_message: str, reason: str) -> None:
    error = connection_error(
        psycopg.OperationalError(driver_message), f"postgresql+psycopg://ann:{PASSWORD}@h/db"
    )
    assert type(error) is NexusConnectionError
    assert error.reason == reason
    assert error.url == "postgresql+psycopg://ann:***@h/db"


def test_a_password_given_as_a_query_parameter_is_hidden_too() -> None:
    error = connection_error(
        psycopg.OperationalError(f"connection failed: nope {PASSWORD}"),
        f"postgresql+psycopg://ann@h/db?password={PASSWORD}",
    )
    assert PASSWORD not in str(error)
    assert str(error) == "cannot connect to postgresql+psycopg://ann@h/db?password=***: nope ***"
