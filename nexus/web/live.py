"""Live updates: one watcher thread per app, fanned out to server-sent-event streams.

The watcher is nexus.work's :class:`~nexus.work.wait.ReadyWaiter` (``LISTEN`` on PostgreSQL,
``PRAGMA data_version`` on SQLite, a re-check at least every second in both: the polling
fallback) asked a different question: "did the queue change?", answered from maintained
counters (``work_stats()`` and ``work_event_counts()``, no scan). Each change bumps a version
number that every open stream receives as an ``event: change``; pages then refresh their
live region. Streams are bounded (``max_streams``; the next one gets 503), end after
``stream_seconds`` (the browser reconnects by itself) and end at once when the feed closes
(server shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from nexus.errors import NexusError
from nexus.work import WorkQueue
from nexus.work.wait import ReadyWaiter

#: Changes closer together than this are sent as one (pages refresh at most this often).
MIN_INTERVAL = 0.5
#: A comment line keeps idle streams (and proxies) alive this often.
KEEPALIVE_SECONDS = 15.0


class TooManyStreams(NexusError):
    """Every stream slot is taken."""


class ChangeFeed:
    def __init__(
        self, queue: WorkQueue, *, max_streams: int = 32, stream_seconds: float = 300.0
    ) -> None:
        self.queue = queue
        self.max_streams = max_streams
        self.stream_seconds = stream_seconds
        self.version = 0
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[int | None]]] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: tuple[Any, ...] | None = None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def streams(self) -> int:
        return len(self._subscribers)

    # ------------------------------------------------------------------ watcher thread

    def _fingerprint(self) -> tuple[Any, ...]:
        stats = self.queue.work_stats()
        events = self.queue.work_event_counts()["events"]
        return (
            tuple(sorted(stats["by_status"].items())),
            stats["ready"],
            stats["blocked"],
            tuple(sorted(events.items())),
        )

    def _changed(self) -> bool:
        if self._closed.is_set():
            return True  # wake the waiter so that the thread can stop
        try:
            current = self._fingerprint()
        except NexusError:
            return False  # the database is away: the waiter polls on
        if current == self._last:
            return False
        self._last = current
        return True

    def _watch(self) -> None:
        waiter = ReadyWaiter(self.queue.store.url, self._changed)
        try:
            with contextlib.suppress(NexusError):
                self._last = self._fingerprint()
            while not self._closed.is_set():
                if waiter.wait(KEEPALIVE_SECONDS) and not self._closed.is_set():
                    self._publish()
                    self._closed.wait(MIN_INTERVAL)
        finally:
            waiter.close()

    def _publish(self) -> None:
        with self._lock:
            self.version += 1
            targets = list(self._subscribers)
            version = self.version
        for loop, inbox in targets:
            with contextlib.suppress(RuntimeError):  # that loop is closed: its stream is gone
                loop.call_soon_threadsafe(inbox.put_nowait, version)

    # ------------------------------------------------------------------ streams

    def _subscribe(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[int | None]]:
        with self._lock:
            if self._closed.is_set():
                raise TooManyStreams("the dashboard is shutting down")
            if len(self._subscribers) >= self.max_streams:
                raise TooManyStreams(f"{self.max_streams} live streams are open already")
            entry = (asyncio.get_running_loop(), asyncio.Queue[int | None]())
            self._subscribers.add(entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="nexus-web-changes", daemon=True
                )
                self._thread.start()
        return entry

    def stream(self) -> AsyncIterator[str]:
        """An SSE stream (raises TooManyStreams before anything is sent when full)."""
        entry = self._subscribe()
        return self._events(entry)

    async def _events(
        self, entry: tuple[asyncio.AbstractEventLoop, asyncio.Queue[int | None]]
    ) -> AsyncIterator[str]:
        loop, inbox = entry
        deadline = loop.time() + self.stream_seconds
        try:
            yield f"retry: 2000\nevent: hello\ndata: {self.version}\n\n"
            while not self._closed.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    version = await asyncio.wait_for(
                        inbox.get(), timeout=min(KEEPALIVE_SECONDS, remaining)
                    )
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if version is None:
                    break
                yield f"event: change\ndata: {version}\n\n"
        finally:
            with self._lock:
                self._subscribers.discard(entry)

    def close(self) -> None:
        """End every stream now and stop the watcher (idempotent)."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            targets = list(self._subscribers)
            thread = self._thread
        for loop, inbox in targets:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(inbox.put_nowait, None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def wait_until_idle(self, timeout: float) -> bool:
        """True once no stream is open (for tests and shutdown), False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._subscribers and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._subscribers
