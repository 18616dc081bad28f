"""The exception tree: every nexus error is a NexusError, input errors are also the builtin
callers already catch (ValueError, FileNotFoundError, LookupError), and each carries the
offending value both as an attribute and in its message."""

from __future__ import annotations

import pytest

import nexus
from nexus.errors import (
    DatabaseNotFoundError,
    DependencyCycleError,
    InvalidArgumentError,
    InvalidMetadataError,
    InvalidPathError,
    LeaseLostError,
    MigrationError,
    NexusConfigError,
    NexusConnectionError,
    NexusDatabaseError,
    NexusError,
    NexusFileNotFoundError,
    ReadOnlyDatabaseError,
    ReadOnlyMigrationError,
    WorkItemNotFoundError,
    WorkItemStateError,
)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (NexusConfigError, ValueError),
        (InvalidArgumentError, ValueError),
        (InvalidPathError, ValueError),
        (InvalidMetadataError, ValueError),
        (DependencyCycleError, ValueError),
        (NexusFileNotFoundError, FileNotFoundError),
        (WorkItemNotFoundError, LookupError),
        (NexusDatabaseError, NexusError),
        (MigrationError, NexusDatabaseError),
        (NexusConnectionError, NexusDatabaseError),
        (DatabaseNotFoundError, NexusConnectionError),
        (ReadOnlyDatabaseError, NexusDatabaseError),
        (ReadOnlyMigrationError, MigrationError),
        (ReadOnlyMigrationError, ReadOnlyDatabaseError),
        (LeaseLostError, NexusError),
        (WorkItemStateError, NexusError),
    ],
)
def test_error_classes_subclass_nexus_error_and_the_natural_builtin(
    cls: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(cls, NexusError)
    assert issubclass(cls, builtin)


def test_every_error_is_exported_from_the_package() -> None:
    for cls in (
        NexusError,
        NexusConfigError,
        InvalidArgumentError,
        InvalidPathError,
        InvalidMetadataError,
        DependencyCycleError,
        NexusFileNotFoundError,
        NexusDatabaseError,
        NexusConnectionError,
        DatabaseNotFoundError,
        MigrationError,
        ReadOnlyDatabaseError,
        ReadOnlyMigrationError,
        WorkItemNotFoundError,
        WorkItemStateError,
        LeaseLostError,
    ):
        assert getattr(nexus, cls.__name__) is cls


def test_invalid_path_error_carries_the_path() -> None:
    error = InvalidPathError("/a/../b", "contains a '..' segment")
    assert error.path == "/a/../b"
    assert "'/a/../b'" in str(error)
    assert "'..'" in str(error)


def test_invalid_metadata_error_carries_key_and_value() -> None:
    error = InvalidMetadataError("priority", "high", "must be an int or None")
    assert (error.key, error.value) == ("priority", "high")
    assert "'priority'" in str(error)
    assert "'high'" in str(error)


def test_invalid_argument_error_carries_name_and_value() -> None:
    error = InvalidArgumentError("limit", -1, "must be None or a non-negative int")
    assert (error.name, error.value) == ("limit", -1)
    assert "-1" in str(error)
    assert "limit" in str(error)


def test_dependency_cycle_error_names_the_path_and_the_dependency() -> None:
    error = DependencyCycleError("/a", "/b")
    assert error.path == "/a"
    assert (error.key, error.value) == ("depends_on", "/b")
    assert "/a" in str(error)
    assert "'/b'" in str(error)
    assert isinstance(error, InvalidMetadataError)


def test_file_not_found_error_carries_the_path() -> None:
    error = NexusFileNotFoundError("/missing.json")
    assert error.path == "/missing.json"
    assert "'/missing.json'" in str(error)
    with pytest.raises(FileNotFoundError):
        raise error


def test_config_error_carries_the_value() -> None:
    error = NexusConfigError("unsupported database", value="mysql://x")
    assert error.value == "mysql://x"
    with pytest.raises(ValueError):
        raise error


def test_catching_the_builtin_catches_nexus_errors() -> None:
    with pytest.raises(ValueError):
        raise InvalidPathError("a", "must start with '/'")
    with pytest.raises(NexusError):
        raise InvalidPathError("a", "must start with '/'")


def test_work_item_state_error_carries_path_status_and_what_was_needed() -> None:
    error = WorkItemStateError("/a", "ready", ("failed",), "retry_work")
    assert (error.path, error.status, error.required, error.operation) == (
        "/a",
        "ready",
        ("failed",),
        "retry_work",
    )
    assert str(error) == "'/a' is ready; retry_work needs failed"
    many = WorkItemStateError("/a", "completed", ("ready", "pending", "failed"), "cancel_work")
    assert str(many) == "'/a' is completed; cancel_work needs ready, pending or failed"
    # A wrong state is not "not found": neither a WorkItemNotFoundError nor a LookupError.
    assert not isinstance(error, (LookupError, LeaseLostError))


def test_lease_lost_error_says_what_became_of_the_item() -> None:
    assert str(LeaseLostError("/a", "t")) == "lease 't' on '/a' is no longer held"
    held = LeaseLostError("/a", "t", "in_progress")
    assert str(held) == "lease 't' on '/a' is no longer held (another lease holds it)"
    done = LeaseLostError("/a", "t", "completed")
    assert (done.path, done.lease_token, done.status) == ("/a", "t", "completed")
    assert str(done) == "lease 't' on '/a' is no longer held (the item is completed now)"


def test_connection_errors_carry_the_database_and_the_reason() -> None:
    error = NexusConnectionError("postgresql+psycopg://u:***@h/db", "host 'h' not found")
    assert (error.url, error.reason) == ("postgresql+psycopg://u:***@h/db", "host 'h' not found")
    assert str(error) == "cannot connect to postgresql+psycopg://u:***@h/db: host 'h' not found"
    missing = DatabaseNotFoundError("/data/typo.db", "no such file")
    assert str(missing) == "no nexus database at /data/typo.db: no such file"
    assert not isinstance(missing, MigrationError)
