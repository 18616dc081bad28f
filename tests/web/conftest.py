"""Fixtures of the dashboard tests: a seeded queue (both databases), clients over new apps,
and apps served by uvicorn in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from starlette.applications import Starlette
from webtools import Client, LiveServer, Seeded, seed

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.web import create_app
from nexus.work import RetryPolicy, WorkQueue


@pytest.fixture
def seeded(queue: WorkQueue) -> Seeded:
    queue.retry_policy = RetryPolicy(base_seconds=3600, max_seconds=3600)  # stays deferred
    return seed(queue)


@pytest.fixture
def make_client(store: SQLAlchemyMetadataStore) -> Iterator[Callable[..., Client]]:
    """``make_client(admin=False)``: a client over a new app on the test store."""
    apps: list[Starlette] = []

    def factory(*, admin: bool = False) -> Client:
        app = create_app(store, admin=admin)
        apps.append(app)
        return Client(app)

    yield factory
    for app in apps:
        app.state.nexus.close()


@pytest.fixture
def client(make_client: Callable[..., Client], seeded: Seeded) -> Client:
    client: Client = make_client()
    return client


@pytest.fixture
def admin_client(make_client: Callable[..., Client], seeded: Seeded) -> Client:
    client: Client = make_client(admin=True)
    return client


@pytest.fixture
def serve_app() -> Iterator[Callable[[Starlette], LiveServer]]:
    started: list[LiveServer] = []

    def factory(app: Starlette) -> LiveServer:
        server = LiveServer(app).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.thread.is_alive():
            server.stop()
