"""Live updates over server-sent events, with the app served by uvicorn in a thread (both
databases): a stream says hello, then reports a change made by another connection within
seconds; a change that makes nothing ready (a completion) is reported too; streams are
bounded (the next one gets 503 until one closes); and stopping the server ends open
streams at once instead of waiting for them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from webtools import LiveServer

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.web import create_app
from nexus.work import WorkQueue


def _events(response: httpx.Response) -> Iterator[str]:
    """The event names of a stream, as they arrive."""
    for line in response.iter_lines():
        if line.startswith("event: "):
            yield line[len("event: ") :]


def _next_change_after(
    server: LiveServer, action: Callable[[], object], *, within: float = 10.0
) -> float:
    """Open a stream, run ``action`` once it said hello; seconds until ``change`` came."""
    with (
        httpx.Client(timeout=httpx.Timeout(within)) as client,
        client.stream("GET", server.url + "/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)
        assert next(events) == "hello"
        began = time.monotonic()
        action()
        assert next(events) == "change"
        return time.monotonic() - began


def test_a_change_reaches_open_streams(
    queue: WorkQueue,
    make_queue: Callable[..., WorkQueue],
    serve_app: Callable[..., LiveServer],
) -> None:
    server = serve_app(create_app(queue.store))
    other = make_queue()  # another connection, as another process would write
    assert _next_change_after(server, lambda: other.enqueue("/live/a")) < 5
    (held,) = other.claim_ready_work("w")
    # A completion makes nothing ready (no notification on PostgreSQL): still reported.
    assert (
        _next_change_after(server, lambda: other.complete_work("/live/a", held["lease_token"])) < 5
    )


def test_streams_are_bounded(
    store: SQLAlchemyMetadataStore, serve_app: Callable[..., LiveServer]
) -> None:
    app = create_app(store)
    app.state.nexus.feed.max_streams = 1
    server = serve_app(app)
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", server.url + "/events") as first:
            events = _events(first)  # kept: a dropped iterator closes the connection
            assert next(events) == "hello"
            second = client.get(server.url + "/events")
            assert second.status_code == 503 and second.headers["retry-after"] == "5"
        assert app.state.nexus.feed.wait_until_idle(5)
        with client.stream("GET", server.url + "/events") as third:
            assert next(_events(third)) == "hello"


def test_streams_end_after_their_time(
    store: SQLAlchemyMetadataStore, serve_app: Callable[..., LiveServer]
) -> None:
    app = create_app(store)
    app.state.nexus.feed.stream_seconds = 0.5
    server = serve_app(app)
    began = time.monotonic()
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", server.url + "/events") as response,
    ):
        assert list(_events(response)) == ["hello"]  # then the server ends the stream
    assert time.monotonic() - began < 5


def test_shutdown_ends_open_streams(
    store: SQLAlchemyMetadataStore, serve_app: Callable[..., LiveServer]
) -> None:
    server = serve_app(create_app(store))
    ended = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(timeout=30) as client,
            client.stream("GET", server.url + "/events") as response,
        ):
            for _ in response.iter_lines():
                pass
        ended.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    deadline = time.monotonic() + 10
    while server.app.state.nexus.feed.streams == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.app.state.nexus.feed.streams == 1
    took = server.stop()
    assert ended.wait(5)
    assert took < 4, f"shutdown waited {took:.1f} s for the stream"
    assert not server.thread.is_alive()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
