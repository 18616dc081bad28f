"""Storage layer: engine set-up, schema, migrations and the metadata store.

Import rules: nothing here imports ``nexus.work``, ``nexus.cli`` or ``nexus.web``; those
layers are built on this one (``nexus.work.WorkQueue`` holds a store).

The names below load on first use (PEP 562): they bring SQLAlchemy and Alembic, which the
light modules of this package (``clock``, ``validation``, ``content``) do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nexus.storage.metadata_store import FileRecord, SQLAlchemyMetadataStore
    from nexus.storage.paging import WorkPage

__all__ = ["FileRecord", "SQLAlchemyMetadataStore", "WorkPage"]

_LAZY = {
    "FileRecord": "nexus.storage.metadata_store",
    "SQLAlchemyMetadataStore": "nexus.storage.metadata_store",
    "WorkPage": "nexus.storage.paging",
}

if not TYPE_CHECKING:  # for mypy, the imports above are the whole namespace

    def __getattr__(name: str) -> object:
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
