"""A worker process loop on top of the queue's calls.

``Worker(queue, handler).run()`` claims ready items, runs ``handler(item)`` for each (in up to
``concurrency`` threads), heartbeats their leases while the handler runs, completes them with
the handler's return value, or fails them with the exception's text (retried with back-off
until ``max_attempts``). SIGTERM/SIGINT stop it gracefully: no new claims, the items being
handled are finished, then ``run`` returns. A handler that raises :class:`StopWorker` (it
cannot work at all: its program is missing, say) has its item released and stops the worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from nexus.errors import (
    InvalidArgumentError,
    InvalidMetadataError,
    LeaseLostError,
    MigrationError,
    NexusDatabaseError,
    NexusError,
    NexusFileNotFoundError,
    ReadOnlyDatabaseError,
    WorkItemNotFoundError,
    WorkItemStateError,
)
from nexus.storage.validation import (
    validate_prefix,
    validate_seconds,
    validate_tags,
    validate_text,
)

if TYPE_CHECKING:
    from nexus.work.queue import WorkItem, WorkQueue

log = logging.getLogger("nexus.worker")
T = TypeVar("T")

Handler = Callable[["WorkItem"], Any]

#: What a write on a held item raises when the item is no longer this worker's: its lease
#: was lost (rescued, revoked, cancelled, taken over), or the item itself is gone (its path
#: deleted, its status key removed). The worker counts the item lost and carries on.
NOT_HELD = (LeaseLostError, WorkItemStateError, WorkItemNotFoundError, NexusFileNotFoundError)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class StopWorker(Exception):
    """Raised by a handler that cannot handle this item, nor (likely) any other: its program
    cannot be started, a resource it needs is gone. Not the item's fault, so the item is
    released (``ready`` again, the attempt not counted) rather than failed; the worker claims
    nothing more, lets the other running handlers finish, settles their items, and then
    ``run()`` (or ``run_once()``) raises this exception (the first one, if several handlers
    raised one)."""


@dataclass
class WorkerStats:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    #: Dependents the worker's completions promoted to ready.
    promoted: int = 0
    #: Items given back by a handler that raised StopWorker.
    released: int = 0


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
        write_retry_seconds: float = 60.0,
    ) -> None:
        if not callable(handler):
            raise InvalidArgumentError("handler", handler, "must be callable")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError("concurrency", concurrency, "must be a positive int")
        # Checked now rather than at the first claim, inside run().
        validate_seconds("lease_seconds", lease_seconds)
        validate_seconds("poll_interval", poll_interval)
        if heartbeat_interval is not None:
            validate_seconds("heartbeat_interval", heartbeat_interval)
        validate_seconds("write_retry_seconds", write_retry_seconds, allow_zero=True)
        if worker_id is not None:
            validate_text("worker_id", worker_id)
        validate_tags(tags)
        if path_prefix is not None:
            validate_prefix(path_prefix)
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
        self._stopped_by: StopWorker | None = None
        self._held: dict[str, str] = {}  # path -> lease token
        self._held_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.write_retry_seconds = write_retry_seconds

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
        """Process items until stopped (or, with ``stop_when_idle``, until none is ready).

        Each round completes the items handled in the previous round and claims the next
        ones in one transaction (``complete_and_claim``)."""
        done: list[tuple[WorkItem, Any]] = []
        with self._signals(), self._heartbeating(), self._handlers():
            while True:
                want = self.concurrency
                if max_items is not None:
                    want = min(want, max_items - self.stats.claimed)
                if self.stopping or want <= 0:
                    self._settle(done, 0)
                    break
                items = self._settle(done, want)
                done = []
                if not items:
                    if stop_when_idle:
                        break
                    try:
                        self.queue.wait_for_ready_work(self.poll_interval)
                    except NexusDatabaseError as exc:  # the database is away: poll later
                        log.warning("worker %s: waiting failed: %s", self.worker_id, exc)
                        self._stop.wait(self.poll_interval)
                    continue
                done = self._handle_all(items)
        self._raise_stop_worker()
        return self.stats

    def run_once(self) -> int:
        """Claim up to ``concurrency`` items, handle and complete them; returns how many."""
        if self.stopping:
            return 0
        with self._handlers():
            items = self._settle([], self.concurrency)
            self._settle(self._handle_all(items), 0)
        self._raise_stop_worker()
        return len(items)

    def _raise_stop_worker(self) -> None:
        stopped_by, self._stopped_by = self._stopped_by, None
        if stopped_by is not None:
            raise stopped_by

    @contextmanager
    def _handlers(self) -> Iterator[None]:
        """One thread pool for the handlers of every round (not one per round)."""
        if self.concurrency == 1 or self._pool is not None:
            yield
            return
        self._pool = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix=f"nexus-{self.worker_id}"
        )
        try:
            yield
        finally:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _settle(self, done: list[tuple[WorkItem, Any]], want: int) -> list[WorkItem]:
        """Complete ``done`` (item, result) pairs and claim up to ``want`` new items."""
        completions = [(item["path_id"], str(item["lease_token"]), result) for item, result in done]
        claimed: list[WorkItem] = []
        promoted: list[str] = []
        try:
            if want:
                promoted, claimed = self._retrying(
                    lambda: self.queue.complete_and_claim(
                        completions,
                        self.worker_id,
                        limit=want,
                        lease_seconds=self.lease_seconds,
                        tags=self.tags,
                        path_prefix=self.path_prefix,
                    )
                )
            elif completions:
                promoted = self._retrying(lambda: self.queue.complete_work_many(completions))
            self.stats.completed += len(done)
            self.stats.promoted += len(promoted)
        except NOT_HELD:
            # All or nothing: one lost item refused the batch; settle the items one by one.
            for item, result in done:
                self._complete_one(item, result)
            if want:
                claimed = self._claim(want)
        except (InvalidMetadataError, InvalidArgumentError):
            # A result the store refuses (e.g. not JSON) fails that item, not the batch.
            for item, result in done:
                self._complete_one(item, result)
            if want:
                claimed = self._claim(want)
        finally:
            with self._held_lock:
                for item, _ in done:
                    self._held.pop(item["virtual_path"], None)
        self.stats.claimed += len(claimed)
        with self._held_lock:
            for item in claimed:
                self._held[item["virtual_path"]] = str(item["lease_token"])
        return claimed

    def _retrying(self, write: Callable[[], T]) -> T:
        """Run a write of the worker's own (a completion, a failure, a claim), retried while
        the database is unreachable (a terminated backend, a restart): the handler is not run
        again, and the lease token fences a write that had landed before the error (the retry
        then gets LeaseLostError). Only handler errors use attempts."""
        delay = 0.05
        deadline = time.monotonic() + self.write_retry_seconds
        while True:
            try:
                return write()
            except NexusDatabaseError as exc:
                # A read-only database or a schema problem does not heal by waiting.
                permanent = isinstance(exc, (MigrationError, ReadOnlyDatabaseError))
                if permanent or time.monotonic() + delay > deadline:
                    raise
                log.warning("worker %s: write failed, retrying: %s", self.worker_id, exc)
                time.sleep(delay)
                delay = min(2.0, delay * 2)

    def _claim(self, want: int) -> list[WorkItem]:
        return self._retrying(
            lambda: self.queue.claim_ready_work(
                self.worker_id,
                limit=want,
                lease_seconds=self.lease_seconds,
                tags=self.tags,
                path_prefix=self.path_prefix,
            )
        )

    def _complete_one(self, item: WorkItem, result: Any) -> None:
        path, token = item["virtual_path"], str(item["lease_token"])
        try:
            promoted = self._retrying(lambda: self.queue.complete_work(path, token, result=result))
            self.stats.completed += 1
            self.stats.promoted += len(promoted)
        except NOT_HELD:
            log.warning("worker %s: lost the lease on %s", self.worker_id, path)
            self.stats.lost += 1
        except NexusDatabaseError:
            raise  # unreachable for longer than write_retry_seconds: not the handler's fault
        except NexusError as exc:
            # The result could not be stored (e.g. not JSON): that is the handler's failure.
            message = f"result rejected: {exc}"
            try:
                self._retrying(lambda: self.queue.fail_work(path, token, message))
                self.stats.failed += 1
            except NOT_HELD:
                self.stats.lost += 1

    def _handle_all(self, items: list[WorkItem]) -> list[tuple[WorkItem, Any]]:
        """Run the handler on each item; failures are recorded here, successes returned."""
        if len(items) <= 1 or self._pool is None:
            outcomes = [self._handle(item) for item in items]
        else:
            outcomes = list(self._pool.map(self._handle, items))
        return [(item, result) for item, (ok, result) in zip(items, outcomes, strict=True) if ok]

    def _handle(self, item: WorkItem) -> tuple[bool, Any]:
        path, token = item["virtual_path"], str(item["lease_token"])
        try:
            return True, self.handler(item)
        except StopWorker as exc:
            self._release(path, token, exc)
            return False, None
        except Exception as exc:
            log.warning("worker %s: %s failed: %r", self.worker_id, path, exc)
            message = f"{type(exc).__name__}: {exc}"
            try:
                status = self._retrying(lambda: self.queue.fail_work(path, token, message))
                self.stats.failed += 1
                log.debug("worker %s: %s is now %s", self.worker_id, path, status)
            except NOT_HELD:
                log.warning("worker %s: lost the lease on %s", self.worker_id, path)
                self.stats.lost += 1
            finally:
                with self._held_lock:
                    self._held.pop(path, None)
            return False, None

    def _release(self, path: str, token: str, reason: StopWorker) -> None:
        """Give the item of a handler that raised StopWorker back, and stop claiming."""
        with self._held_lock:
            if self._stopped_by is None:
                self._stopped_by = reason
                log.info("worker %s: stopping: %s", self.worker_id, reason)
        self.stop()
        try:
            self._retrying(lambda: self.queue.release_work(path, token))
            self.stats.released += 1
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
                except NOT_HELD:
                    log.warning("worker %s: lease on %s lost at heartbeat", self.worker_id, path)
                except NexusError as exc:  # keep heartbeating the others
                    log.warning("worker %s: heartbeat of %s failed: %s", self.worker_id, path, exc)
