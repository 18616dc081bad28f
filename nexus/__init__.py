"""nexus: a metadata store of file paths that doubles as a dependency-aware work queue."""

from nexus.connect import NexusFS, connect
from nexus.errors import (
    DatabaseNotFoundError,
    DependencyCycleError,
    InvalidArgumentError,
    InvalidCursorError,
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

__version__ = "0.1.0"

__all__ = [
    "DatabaseNotFoundError",
    "DependencyCycleError",
    "InvalidArgumentError",
    "InvalidCursorError",
    "InvalidMetadataError",
    "InvalidPathError",
    "LeaseLostError",
    "MigrationError",
    "NexusConfigError",
    "NexusConnectionError",
    "NexusDatabaseError",
    "NexusError",
    "NexusFS",
    "NexusFileNotFoundError",
    "ReadOnlyDatabaseError",
    "ReadOnlyMigrationError",
    "WorkItemNotFoundError",
    "WorkItemStateError",
    "__version__",
    "connect",
]
