"""Storage layer: engine set-up, schema, migrations and the metadata store.

Import rules: nothing here imports ``nexus.work``, ``nexus.cli`` or ``nexus.web``; those
layers are built on this one (``nexus.work.WorkQueue`` holds a store).
"""

from nexus.storage.metadata_store import FileRecord, SQLAlchemyMetadataStore
from nexus.storage.paging import WorkPage

__all__ = ["FileRecord", "SQLAlchemyMetadataStore", "WorkPage"]
