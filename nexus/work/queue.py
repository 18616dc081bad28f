"""The work queue's face: ``WorkQueue(store)``, every queue call in one place.

``WorkQueue`` holds a :class:`~nexus.storage.metadata_store.SQLAlchemyMetadataStore` and
delegates each call, after validating its arguments, to the room that owns it:

* :mod:`nexus.work.enqueue` (``Enqueue``): enqueue, enqueue_many;
* :mod:`nexus.work.leases` (``Leases``): claims, completions, failures, releases,
  heartbeats, the rescue of expired leases;
* :mod:`nexus.work.control` (``Control``): cancel, retry, revoke (an operator's calls);
* :mod:`nexus.work.retention` (``Retention``): prune;
* :mod:`nexus.work.insight` (``Insight``): the read side (items, dependencies, history,
  counters, workers) the CLI and the web use.

The rooms share a :class:`~nexus.work.context.QueueContext` (store, database, driver, tenant,
the one transaction path) and speak to the database only through the dialect's driver
(:mod:`nexus.work.drivers`). State: ``work_items`` is the source of truth; the database
recounts and promotes dependents, writes promotion history and keeps the counters in the
same transaction (revision 0005). See docs/work-queue.md for the state machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from nexus.errors import InvalidArgumentError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.validation import validate_batch, validate_path_or_id, validate_positive_int
from nexus.work.context import QueueContext
from nexus.work.control import Control
from nexus.work.drivers.statements import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS
from nexus.work.enqueue import Enqueue, validate_spec
from nexus.work.insight import Insight, check_path_ids
from nexus.work.items import (
    CANCELLABLE,
    FINISHED_STATUSES,
    STATUSES,
    EnqueuedItem,
    WorkItem,
    check_lease_seconds,
    check_token,
)
from nexus.work.leases import RECLAIM_BATCH, RECLAIM_INTERVAL, Leases
from nexus.work.retention import Retention
from nexus.work.retry import RetryPolicy
from nexus.work.wait import ReadyWaiter

__all__ = [
    "CANCELLABLE",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_MAX_ATTEMPTS",
    "FINISHED_STATUSES",
    "RECLAIM_BATCH",
    "RECLAIM_INTERVAL",
    "STATUSES",
    "EnqueuedItem",
    "WorkItem",
    "WorkQueue",
]


class WorkQueue:
    """Queue operations over a store; see docs/work-queue.md for the state machine.

    ``WorkQueue(store)``; ``nexus.connect(...)`` gives one as ``nx.queue``.
    """

    def __init__(
        self, store: SQLAlchemyMetadataStore, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        self.store = store
        self.db = store.database
        self.dialect = self.db.dialect
        self.tenant_id = store.tenant_id
        self._ctx = ctx = QueueContext(store, retry_policy or RetryPolicy())
        self._enqueue = Enqueue(ctx)
        self._leases = Leases(ctx)
        self._control = Control(ctx)
        self._retention = Retention(ctx)
        self._insight = Insight(ctx)
        self._waiter: ReadyWaiter | None = None

    @property
    def retry_policy(self) -> RetryPolicy:
        """The back-off of failed items (settable; the rooms read it at each failure)."""
        return self._ctx.retry_policy

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        self._ctx.retry_policy = policy

    @property
    def _last_reclaim(self) -> float:
        """When a claim last looked for expired leases (tests hold the rescue back with it)."""
        return self._leases.last_reclaim

    @_last_reclaim.setter
    def _last_reclaim(self, moment: float) -> None:
        self._leases.last_reclaim = moment

    # ------------------------------------------------------------------ enqueue

    def enqueue(
        self,
        path: str,
        *,
        priority: int | None = None,
        depends_on: str | list[str] | None = None,
        tags: list[str] | None = None,
        status: str = "ready",
        run_after: datetime | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        idempotency_key: str | None = None,
    ) -> EnqueuedItem:
        """Make ``path`` a work item (creating the path if absent).

        Enqueuing a path that is already a work item, or an ``idempotency_key`` already
        used, is a no-op that returns the existing item (``created`` False). Dependencies
        on paths that do not exist are kept (they block) and listed in
        ``missing_dependencies``.
        """
        return self.enqueue_many(
            [
                {
                    "path": path,
                    "priority": priority,
                    "depends_on": depends_on,
                    "tags": tags,
                    "status": status,
                    "run_after": run_after,
                    "max_attempts": max_attempts,
                    "idempotency_key": idempotency_key,
                }
            ]
        )[0]

    def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[EnqueuedItem]:
        """Enqueue a batch (a whole DAG: nodes and ``depends_on`` edges) in one transaction.

        Returns one item per input, in order, each with ``created`` and
        ``missing_dependencies`` (see :class:`EnqueuedItem`); an entry naming the path or
        the idempotency key of an earlier entry of the batch gets that item, not created.
        Everything is validated before anything is written; a dependency cycle anywhere —
        inside the batch or through items already stored — rejects the whole batch.
        """
        specs = [validate_spec(item) for item in validate_batch("items", items)]
        if not specs:
            return []
        return self._enqueue.enqueue(specs)

    # ------------------------------------------------------------------ leases

    def claim_ready_work(
        self,
        worker_id: str,
        *,
        limit: int = 1,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        tags: list[str] | None = None,
        path_prefix: str | None = None,
    ) -> list[WorkItem]:
        """Atomically move up to ``limit`` items, in ``ready_work_items`` order, to in_progress.

        Each returned item carries a ``lease_token`` that heartbeat/complete/fail/release
        need. Expired leases are reclaimed first (looked for at most every
        ``RECLAIM_INTERVAL`` seconds), so no sweeper process is required. ``tags`` keeps
        items having at least one of the tags; ``path_prefix`` keeps paths starting with it.
        """
        return self._leases.claim(worker_id, limit, lease_seconds, tags, path_prefix)

    def complete_work(self, path: str, lease_token: str, *, result: Any = None) -> list[str]:
        """Mark the item completed; returns the blocked dependents promoted to ready."""
        return self._leases.complete([(path, lease_token, result)], "complete_work")

    def complete_work_many(
        self, items: Iterable[tuple[str, str] | tuple[str, str, Any]]
    ) -> list[str]:
        """Complete several held items in one transaction (all or nothing); returns the
        blocked dependents promoted to ready. Durable when it returns."""
        return self._leases.complete(items, "complete_work_many")

    def complete_and_claim(
        self,
        items: Iterable[tuple[str, str] | tuple[str, str, Any]],
        worker_id: str,
        *,
        limit: int = 1,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        tags: list[str] | None = None,
        path_prefix: str | None = None,
    ) -> tuple[list[str], list[WorkItem]]:
        """Complete held items and claim the next ones in one transaction (a worker's loop:
        one commit per round instead of two). Returns (promoted paths, claimed items); if a
        lease is not held, nothing is completed or claimed (LeaseLostError)."""
        return self._leases.complete_and_claim(
            items, worker_id, limit, lease_seconds, tags, path_prefix
        )

    def fail_work(self, path: str, lease_token: str, error: Any, *, retry: bool = True) -> str:
        """Record a failure. Retries with back-off while attempts remain, else ``failed``.

        Returns the item's new status: ``"ready"`` (to be retried after ``run_after``) or
        ``"failed"`` (dead letter; the error is kept in ``last_error``).
        """
        ref = validate_path_or_id(path)
        token = check_token(lease_token)
        # An error's text is recorded, never refused: what no database can store (a NUL, a
        # lone surrogate) is escaped.
        message = (
            str(error)[:4000]
            .replace("\x00", "\\x00")
            .encode("utf-8", "backslashreplace")
            .decode("utf-8")
        )
        return self._leases.fail(ref, token, message, retry)

    def release_work(self, path: str, lease_token: str) -> None:
        """Give a held item back untouched: ready again, the attempt not counted."""
        self._leases.release(validate_path_or_id(path), check_token(lease_token))

    def heartbeat(
        self, path: str, lease_token: str, *, lease_seconds: float | None = None
    ) -> datetime:
        """Extend the lease (by ``lease_seconds``, default the claim's); returns the new expiry."""
        ref = validate_path_or_id(path)
        token = check_token(lease_token)
        lease = None if lease_seconds is None else check_lease_seconds(lease_seconds)
        return self._leases.heartbeat(ref, token, lease)

    def reclaim_expired_leases(self) -> int:
        """Return expired in_progress items to ready (or failed when out of attempts)."""
        return self._leases.reclaim_expired()

    # ------------------------------------------------------------------ an operator's transitions

    def cancel_work(self, path: str) -> None:
        """Stop an item for good: status ``failed`` with last_error ``"cancelled"``.

        A worker holding it loses its lease (its complete/fail raise LeaseLostError).
        Completed items cannot be cancelled (WorkItemStateError).
        """
        self._control.cancel(validate_path_or_id(path))

    def retry_work(self, path: str) -> None:
        """Put a failed (dead-lettered or cancelled) item back to ready, attempts reset;
        any other status is refused (WorkItemStateError)."""
        self._control.retry(validate_path_or_id(path))

    def revoke_lease(self, path: str) -> None:
        """Take an in_progress item back from its worker (an operator's release, no token
        needed): ready again, the attempt not counted. The worker's complete/fail/heartbeat
        raise LeaseLostError from then on; an item not in_progress is refused
        (WorkItemStateError)."""
        self._control.revoke(validate_path_or_id(path))

    # ------------------------------------------------------------------ retention

    def prune(
        self,
        older_than: timedelta | datetime,
        statuses: Sequence[str] = ("completed",),
        *,
        batch_size: int = 1000,
    ) -> int:
        """Delete this tenant's finished items whose ``finished_at`` is older than the cutoff;
        returns how many were deleted.

        ``older_than`` is an age (``timedelta``, before now) or a moment (``datetime``; naive
        means UTC). ``statuses`` are among ``completed`` and ``failed`` (cancelled items are
        ``failed``). An item goes with its path: metadata, history and idempotency key. An
        item that something not completed still depends on is kept (see docs/work-queue.md).
        Deletes run in batches of ``batch_size`` items, each its own short transaction.
        """
        return self._retention.prune(older_than, statuses, batch_size)

    # ------------------------------------------------------------------ insight

    def get_work_item(self, path: str) -> WorkItem | None:
        """The work item at ``path`` (status, priority, attempts, lease expiry, last_error...)."""
        return self._insight.work_item(validate_path_or_id(path))

    def get_work_items(self, path_ids: Sequence[str]) -> list[WorkItem]:
        """The work items with these path_ids, in the order given (ids that are no work item
        of this tenant are left out)."""
        ids = check_path_ids(path_ids)
        return self._insight.work_items(ids)

    def page_failed_work(
        self, limit: int = 100, *, after: str | None = None
    ) -> tuple[list[WorkItem], str | None]:
        """A page of failed (dead-lettered or cancelled) items, most recently finished
        first, and the cursor of the next page (None after the last). ``after`` is a cursor
        returned here; a page deep in the list costs what the first one costs."""
        limit = min(validate_positive_int("limit", limit), 10_000)
        return self._insight.failed_page(limit, after)

    def explain_blocked(self, path: str) -> list[dict[str, Any]]:
        """The chain of unresolved blockers behind ``path``, nearest first.

        Each entry: ``path`` (the dependency as written), ``path_id`` (None if missing),
        ``status``, ``why``, ``depth`` (1 = direct) and ``blocks`` (the path it holds up).
        """
        return self._insight.explain_blocked(validate_path_or_id(path))

    def get_dependencies(self, path: str) -> list[dict[str, Any]]:
        """Every direct dependency of ``path``, resolved or not, ordered by reference.

        Each entry: ``path`` (the target's virtual path; the reference as written if no such
        path exists), ``path_id`` (None if missing), ``status`` (None if missing, deleted or
        not a work item) and ``why`` (None when resolved, else as in :meth:`explain_blocked`).
        """
        return self._insight.dependencies(validate_path_or_id(path))

    def get_dependents(self, path: str) -> list[dict[str, Any]]:
        """The live paths whose ``depends_on`` names ``path`` (by virtual path or path_id),
        ordered by virtual path: ``path``, ``path_id`` and ``status`` (None if not a work
        item)."""
        return self._insight.dependents(validate_path_or_id(path))

    def get_work_history(self, path: str) -> list[dict[str, Any]]:
        """Every recorded transition of the item, oldest first."""
        return self._insight.history(validate_path_or_id(path))

    def work_stats(self) -> dict[str, Any]:
        """Counts from maintained counters (O(1) in the number of items).

        ``ready_now`` (the rows of ``ready_work_items``: claimable now) and
        ``waiting_on_dependencies`` (the rows of ``blocked_work_items``, whatever their
        status); ``ready`` and ``blocked``, their older names, kept for compatibility;
        ``pending`` and ``in_progress`` (the rows of those views) and ``by_status`` (the
        status counts: items per value of the ``status`` key). docs/views.md's glossary
        tells the two ideas apart."""
        return self._insight.stats()

    def work_analytics(self) -> dict[str, list[dict[str, Any]]]:
        """The history views: ``throughput_hourly``, ``failures_by_error``, ``timing_hourly``."""
        return self._insight.analytics()

    def work_event_counts(self) -> dict[str, Any]:
        """The history's maintained counters (revision 0006; O(1) in items and history).

        ``events``: {event: count} of every history event ever recorded (``claimed``,
        ``completed``, ``retried``, ``failed``...; pruning the history does not lower them);
        ``dead_letters``: items that ran out of attempts; ``run_seconds``: claim-to-complete
        times of completions, ``{"count", "sum", "buckets"}`` with ``buckets`` a list of
        (upper bound, cumulative count) ending with ``(inf, count)``.
        """
        return self._insight.event_counts()

    def oldest_ready_at(self) -> datetime | None:
        """When the longest-waiting item of ``ready_work_items`` became ready (its
        ``run_after`` if it had one, else its ``created_at``); None when nothing is ready.
        One index look-up."""
        return self._insight.oldest_ready_at()

    def work_throughput(self, hours: int = 24) -> list[dict[str, Any]]:
        """Completed / failed / retried per UTC hour over the last ``hours`` hours, oldest
        first, one entry per hour (zeros included), from maintained counters."""
        return self._insight.throughput(min(validate_positive_int("hours", hours), 24 * 366))

    def recent_workers(self, *, window: int = 10_000, limit: int = 100) -> list[dict[str, Any]]:
        """Workers seen recently: those named in the last ``window`` history rows, newest
        first, each with ``last_seen``, ``events``, ``claimed``, ``completed``, ``failed``
        (in that window), ``holding`` (items it holds now) and ``next_lease_expiry``."""
        window = min(validate_positive_int("window", window), 1_000_000)
        limit = min(validate_positive_int("limit", limit), 10_000)
        return self._insight.recent_workers(window, limit)

    # ------------------------------------------------------------------ waiting

    def wait_for_ready_work(self, timeout: float) -> bool:
        """Block until ``ready_work_items`` is non-empty (True) or ``timeout`` seconds pass."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise InvalidArgumentError("timeout", timeout, "must be a non-negative number")
        waiter = self._waiter
        if waiter is None:
            waiter = ReadyWaiter(self.store.url, lambda: bool(self.store.get_ready_work(limit=1)))
            self._waiter = waiter
        return waiter.wait(float(timeout))

    def close(self) -> None:
        """Close the waiter's connection (the store owns everything else)."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.close()
