"""A worker process loop on top of the queue's calls.

``Worker(queue, handler).run()`` claims ready items, runs ``handler(item)`` for each (in up to
``concurrency`` threads), heartbeats their leases while the handler runs, completes them with
the handler's return value, or fails them with the exception's text (retried with back-off
until ``max_attempts``). SIGTERM/SIGINT stop it gracefully: no new claims, the items being
handled are finished, then ``run`` returns.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from nexus.errors import InvalidArgumentError, LeaseLostError, NexusError

if TYPE_CHECKING:
    from nexus.work.queue import WorkItem, WorkQueue

log = logging.getLogger("nexus.worker")

Handler = Callable[["WorkItem"], Any]


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerStats:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0


class Worker:
    def __init__(
        self,
        queue: WorkQueue,
        handler: Handler,
        *,
        worker_id: str | None = None,
        concurrency: int = 1,
        lease_seconds: float = 300,
        tags: list[str] | None = None,
        path_prefix: str | None = None,
        poll_interval: float = 1.0,
        heartbeat_interval: float | None = None,
    ) -> None:
        if not callable(handler):
            raise InvalidArgumentError("handler", handler, "must be callable")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError("concurrency", concurrency, "must be a positive int")
        self.queue = queue
        self.handler = handler
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.tags = tags
        self.path_prefix = path_prefix
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval or max(0.05, lease_seconds / 3)
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._held: dict[str, str] = {}  # path -> lease token
        self._held_lock = threading.Lock()

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the worker to stop after the items it is handling."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("worker %s: signal %s, finishing current work", self.worker_id, signum)
            self.stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ------------------------------------------------------------------ loop

    def run(self, *, stop_when_idle: bool = False, max_items: int | None = None) -> WorkerStats:
        """Process items until stopped (or, with ``stop_when_idle``, until none is ready)."""
        with self._signals(), self._heartbeating():
            while not self.stopping:
                if max_items is not None and self.stats.claimed >= max_items:
                    break
                if self.run_once() == 0:
                    if stop_when_idle:
                        break
                    self.queue.wait_for_ready_work(self.poll_interval)
        return self.stats

    def run_once(self) -> int:
        """Claim up to ``concurrency`` items and handle them; returns how many were handled."""
        if self.stopping:
            return 0
        items = self.queue.claim_ready_work(
            self.worker_id,
            limit=self.concurrency,
            lease_seconds=self.lease_seconds,
            tags=self.tags,
            path_prefix=self.path_prefix,
        )
        self.stats.claimed += len(items)
        with self._held_lock:
            for item in items:
                self._held[item["virtual_path"]] = str(item["lease_token"])
        if len(items) <= 1:
            for item in items:
                self._handle(item)
        else:
            with ThreadPoolExecutor(max_workers=len(items)) as pool:
                list(pool.map(self._handle, items))
        return len(items)

    def _handle(self, item: WorkItem) -> None:
        path, token = item["virtual_path"], str(item["lease_token"])
        try:
            try:
                result = self.handler(item)
            except Exception as exc:
                log.warning("worker %s: %s failed: %r", self.worker_id, path, exc)
                status = self.queue.fail_work(path, token, f"{type(exc).__name__}: {exc}")
                self.stats.failed += 1
                log.debug("worker %s: %s is now %s", self.worker_id, path, status)
                return
            try:
                self.queue.complete_work(path, token, result=result)
            except NexusError as exc:
                if isinstance(exc, LeaseLostError):
                    raise
                # The result could not be stored (e.g. not JSON): that is the handler's failure.
                self.queue.fail_work(path, token, f"result rejected: {exc}")
                self.stats.failed += 1
                return
            self.stats.completed += 1
        except LeaseLostError:
            log.warning("worker %s: lost the lease on %s", self.worker_id, path)
            self.stats.lost += 1
        finally:
            with self._held_lock:
                self._held.pop(path, None)

    # ------------------------------------------------------------------ heartbeats

    @contextmanager
    def _heartbeating(self) -> Iterator[None]:
        done = threading.Event()
        thread = threading.Thread(
            target=self._heartbeat_loop,
            args=(done,),
            name=f"nexus-heartbeat-{self.worker_id}",
            daemon=True,
        )
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _heartbeat_loop(self, done: threading.Event) -> None:
        while not done.wait(self.heartbeat_interval):
            with self._held_lock:
                held = list(self._held.items())
            for path, token in held:
                try:
                    self.queue.heartbeat(path, token)
                except LeaseLostError:
                    log.warning("worker %s: lease on %s lost at heartbeat", self.worker_id, path)
                except NexusError as exc:  # keep heartbeating the others
                    log.warning("worker %s: heartbeat of %s failed: %s", self.worker_id, path, exc)
