"""Storage layer: engine set-up, schema, migrations and the metadata store.

Import rules: nothing here imports ``nexus.cli``. The store (``metadata_store``) composes the
work-queue methods from ``nexus.work``; ``nexus.work`` in turn uses only this package's
low-level modules (engine, schema, types, validation), never the store module itself.
"""

from nexus.storage.metadata_store import FileRecord, SQLAlchemyMetadataStore

__all__ = ["FileRecord", "SQLAlchemyMetadataStore"]
