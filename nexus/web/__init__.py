"""The web dashboard and Prometheus metrics (the ``web`` extra: ``nexus-workqueue[web]``).

``create_app(store)`` returns a Starlette application (mountable in any ASGI host: see
docs/web.md); ``serve(db)`` runs it with uvicorn on 127.0.0.1:8765;
``nexus.web.metrics.render_metrics(queue)`` is the ``/metrics`` text. This package uses only
the public store and queue API; neither ``nexus.storage`` nor ``nexus.work`` imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nexus.errors import NexusConfigError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from nexus.storage.metadata_store import SQLAlchemyMetadataStore

__all__ = ["create_app", "serve"]

_MISSING = "the web dashboard needs the 'web' extra: pip install 'nexus-workqueue[web]'"


def create_app(store: SQLAlchemyMetadataStore, *, admin: bool = False) -> Starlette:
    """The dashboard over ``store`` (read-only unless ``admin``; basic auth when
    NEXUS_WEB_USER and NEXUS_WEB_PASSWORD are set). The store stays the caller's to close."""
    try:
        from nexus.web.app import build_app
    except ImportError as exc:
        raise NexusConfigError(_MISSING) from exc
    return build_app(store, admin=admin)


def serve(
    db: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    admin: bool = False,
    tenant: str = "default",
    create: bool = True,
) -> None:
    """Serve the dashboard of ``tenant`` in ``db`` (SQLite path or database URL) until
    interrupted. ``create=False`` serves only an existing nexus database."""
    try:
        from nexus.web.server import serve as run
    except ImportError as exc:
        raise NexusConfigError(_MISSING) from exc
    run(db, host=host, port=port, admin=admin, tenant=tenant, create=create)
