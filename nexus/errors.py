"""The nexus exception tree.

Every error nexus raises is a :class:`NexusError`. Errors about bad input are also
``ValueError`` (or ``FileNotFoundError`` for a missing path) and carry the offending value, so
callers can catch either the nexus type or the builtin they already expect. Driver errors
are wrapped in :class:`NexusDatabaseError` with the original chained as ``__cause__``.
"""

from __future__ import annotations

from typing import Any


class NexusError(Exception):
    """Base class of every error raised by nexus."""


class NexusConfigError(NexusError, ValueError):
    """The store or connection was configured wrongly (no database URL, bad option...)."""

    def __init__(self, message: str, *, value: Any = None) -> None:
        super().__init__(message)
        self.value = value


class InvalidArgumentError(NexusError, ValueError):
    """A call argument was rejected before anything was written."""

    def __init__(self, name: str, value: Any, reason: str) -> None:
        super().__init__(f"invalid {name} {value!r}: {reason}")
        self.name = name
        self.value = value
        self.reason = reason


class InvalidPathError(NexusError, ValueError):
    """A virtual path (or path id) is malformed."""

    def __init__(self, path: Any, reason: str) -> None:
        super().__init__(f"invalid path {path!r}: {reason}")
        self.path = path
        self.reason = reason


class InvalidMetadataError(NexusError, ValueError):
    """A metadata key or value was rejected before anything was written."""

    def __init__(self, key: Any, value: Any, reason: str) -> None:
        super().__init__(f"invalid metadata {key!r}={value!r}: {reason}")
        self.key = key
        self.value = value
        self.reason = reason


class DependencyCycleError(InvalidMetadataError):
    """Setting ``depends_on`` would make a path (transitively) depend on itself."""

    def __init__(self, path: str, depends_on: Any) -> None:
        super().__init__(
            "depends_on", depends_on, f"would create a dependency cycle through {path}"
        )
        self.path = path


class NexusFileNotFoundError(NexusError, FileNotFoundError):
    """The path does not exist (or was deleted)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no such path: {path!r}")
        self.path = path


class NexusDatabaseError(NexusError):
    """The database driver failed; the driver's exception is ``__cause__``."""


class NexusConnectionError(NexusDatabaseError):
    """No connection could be opened to the database: the server refused it, was not found
    or did not answer, rejected the credentials, or the SQLite file cannot be opened.

    ``url`` names the database as messages show it (a SQLite path; any other URL with its
    password hidden) and ``reason`` says why in plain words; the driver's exception is
    ``__cause__``."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(self._message(url, reason))
        self.url = url
        self.reason = reason

    @staticmethod
    def _message(url: str, reason: str) -> str:
        return f"cannot connect to {url}: {reason}"


class DatabaseNotFoundError(NexusConnectionError):
    """The database named does not exist: a missing SQLite file opened with
    ``create=False``, a PostgreSQL database the server does not have, or (``create=False``)
    a database without the nexus schema. Nothing was created."""

    @staticmethod
    def _message(url: str, reason: str) -> str:
        return f"no nexus database at {url}: {reason}"


class MigrationError(NexusDatabaseError):
    """The schema could not be brought to (or is newer than) this version of nexus."""


class ReadOnlyDatabaseError(NexusDatabaseError):
    """A write reached a database opened read-only (a SQLite ``mode=ro`` or ``immutable=1``
    URI, a file the process cannot write, a PostgreSQL session with
    ``default_transaction_read_only``). ``url`` names the database (password hidden)."""

    def __init__(self, url: str, detail: str | None = None) -> None:
        message = f"database is read-only: {url}"
        super().__init__(f"{message} ({detail})" if detail else message)
        self.url = url


class ReadOnlyMigrationError(MigrationError, ReadOnlyDatabaseError):
    """The schema of a read-only database is not at this nexus's head, and cannot be
    migrated there (open it writable once to migrate it)."""

    def __init__(self, url: str, current: str | None, head: str) -> None:
        ReadOnlyDatabaseError.__init__(
            self,
            url,
            f"its schema is at revision {current or 'none'}, this nexus needs {head};"
            " open it writable once to migrate it",
        )
        self.current = current
        self.head = head


class WorkItemNotFoundError(NexusError, LookupError):
    """The path exists but is no work item (a path that does not exist at all is a
    :class:`NexusFileNotFoundError`)."""

    def __init__(self, path: str, reason: str = "is not a work item") -> None:
        super().__init__(f"{path!r} {reason}")
        self.path = path


class WorkItemStateError(NexusError):
    """The work item exists, but its status is not one the operation accepts (retrying an
    item that has not failed, cancelling a completed one, completing one never claimed...);
    nothing was changed. ``path`` names the item as given, ``status`` is its status now,
    ``required`` the statuses ``operation`` (the ``WorkQueue`` method) accepts."""

    def __init__(
        self, path: str, status: str, required: tuple[str, ...], operation: str
    ) -> None:
        *others, last = required
        needed = f"{', '.join(others)} or {last}" if others else last
        super().__init__(f"{path!r} is {status}; {operation} needs {needed}")
        self.path = path
        self.status = status
        self.required = required
        self.operation = operation


class LeaseLostError(NexusError):
    """The item had a lease, and ``lease_token`` does not hold it now (it expired and was
    rescued, was revoked, cancelled or finished, or another claim holds the item); nothing
    was changed. ``status`` is the item's status now (None when not looked up)."""

    def __init__(self, path: str, lease_token: str, status: str | None = None) -> None:
        message = f"lease {lease_token!r} on {path!r} is no longer held"
        if status == "in_progress":
            message += " (another lease holds it)"
        elif status is not None:
            message += f" (the item is {status} now)"
        super().__init__(message)
        self.path = path
        self.lease_token = lease_token
        self.status = status


class InvalidCursorError(InvalidArgumentError):
    """A paging cursor is not one this view returned: garbage, a cursor of another view, or
    values of the wrong types. ``cursor`` is the value given."""

    def __init__(self, cursor: Any, reason: str) -> None:
        super().__init__("cursor", cursor, reason)
        self.cursor = cursor
