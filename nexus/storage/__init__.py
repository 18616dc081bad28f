"""Storage layer: engine set-up, schema, migrations and the metadata store.

Import direction is a rule: ``nexus.storage`` never imports ``nexus.work`` or ``nexus.cli``.
"""

from nexus.storage.metadata_store import FileRecord, SQLAlchemyMetadataStore

__all__ = ["FileRecord", "SQLAlchemyMetadataStore"]
