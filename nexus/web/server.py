"""Serving the dashboard with uvicorn (``nexus.web.serve`` and ``nexus web``).

:class:`DashboardServer` is a ``uvicorn.Server`` that ends the live event streams as soon as
shutdown starts: uvicorn waits for open responses before it runs the app's lifespan
shutdown, and an event stream would otherwise keep it waiting until its own end.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from starlette.applications import Starlette

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.web.app import build_app

#: Seconds uvicorn waits for open requests once shutdown starts.
GRACEFUL_SHUTDOWN_SECONDS = 5


class DashboardServer(uvicorn.Server):
    def __init__(self, app: Starlette, *, host: str, port: int, **options: Any) -> None:
        options.setdefault("log_level", "info")
        options.setdefault("timeout_graceful_shutdown", GRACEFUL_SHUTDOWN_SECONDS)
        super().__init__(uvicorn.Config(app, host=host, port=port, **options))
        self.app = app

    async def shutdown(self, sockets: Any = None) -> None:
        self.app.state.nexus.feed.close()
        await super().shutdown(sockets=sockets)


def serve(
    db: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    admin: bool = False,
    tenant: str = "default",
    create: bool = True,
) -> None:
    """Run the dashboard of ``tenant`` on ``db`` (a SQLite path or a database URL) until
    interrupted. ``create=False``: only an existing nexus database (the store's
    ``create``)."""
    store = SQLAlchemyMetadataStore(db, tenant_id=tenant, create=create)
    try:
        DashboardServer(build_app(store, admin=admin), host=host, port=port).run()
    finally:
        store.close()
