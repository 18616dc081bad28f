"""Leases: claims, completions, failures, releases, heartbeats and the rescue of expired
leases. Every call validates first, then runs one transaction body through
:meth:`QueueContext.run <nexus.work.context.QueueContext.run>`; the statements are the
driver's (:mod:`nexus.work.drivers`).

Atomicity: SQLite write transactions start with ``BEGIN IMMEDIATE`` (one writer at a time);
on PostgreSQL claims lock their rows with ``FOR UPDATE SKIP LOCKED`` inside the claim
statement and every lease check locks the item's row, so a stale token can never win a race.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from nexus.errors import InvalidArgumentError, LeaseLostError, WorkItemStateError
from nexus.storage.calls import Body
from nexus.storage.validation import (
    MAX_LIMIT,
    is_path_id,
    validate_batch,
    validate_metadata,
    validate_path_or_id,
    validate_positive_int,
    validate_prefix,
    validate_tags,
    validate_text,
)
from nexus.work.context import QueueContext
from nexus.work.drivers import Lease
from nexus.work.drivers.statements import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS
from nexus.work.items import WorkItem, check_lease_seconds, check_token, claimed_item

#: Expired leases reclaimed per statement (the rest go on the next ones).
RECLAIM_BATCH = 100
#: How often claims look for expired leases (seconds); the lease index makes each look cheap.
RECLAIM_INTERVAL = 1.0

#: What complete_work and friends take: (path, lease_token) or (path, lease_token, result).
Completions = Iterable[tuple[str, str] | tuple[str, str, Any]]


class Leases:
    """Claim, complete, fail, release, heartbeat, reclaim."""

    def __init__(self, ctx: QueueContext) -> None:
        self.ctx = ctx
        self.driver = ctx.driver
        #: When the last claim looked for expired leases (time.monotonic()).
        self.last_reclaim = 0.0
        self._reclaim_lock = threading.Lock()

    # ------------------------------------------------------------------ claims

    def claim(
        self,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        tags: list[str] | None,
        path_prefix: str | None,
    ) -> list[WorkItem]:
        claim = self.prepare_claim(worker_id, limit, lease_seconds, tags, path_prefix)
        return _in_ready_order(self.ctx.run(claim))

    def prepare_claim(
        self,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        tags: list[str] | None,
        path_prefix: str | None,
    ) -> Callable[[], Body[list[WorkItem]]]:
        """Validate a claim and return its body's factory."""
        validate_text("worker_id", worker_id)
        limit = min(validate_positive_int("limit", limit), MAX_LIMIT)
        lease = check_lease_seconds(lease_seconds)
        wanted_tags = validate_tags(tags)
        prefix = validate_prefix(path_prefix) if path_prefix is not None else None
        now_dt = self.ctx.now()
        now = self.driver.timestamp(now_dt)
        params: dict[str, Any] = {
            "worker": worker_id,
            "now": now,
            "expires": self.driver.timestamp(now_dt + timedelta(seconds=lease)),
            "lease": lease,
            "tenant": self.ctx.tenant_id,
            "limit": limit,
        }
        if prefix is not None:
            params["prefix"] = prefix
        if wanted_tags:
            params["tags"] = self.driver.array(wanted_tags)
        reclaim = self._reclaim_due()

        def body() -> Body[list[WorkItem]]:
            if reclaim:
                yield from self.driver.reclaim(now, self.ctx.tenant_id, RECLAIM_BATCH)
            rows = yield from self.driver.claim(
                params, prefix=prefix is not None, tags=bool(wanted_tags)
            )
            return [claimed_item(self.driver, row, worker_id, now_dt) for row in rows]

        return body

    def _reclaim_due(self) -> bool:
        moment = time.monotonic()
        with self._reclaim_lock:
            if moment - self.last_reclaim < RECLAIM_INTERVAL:
                return False
            self.last_reclaim = moment
            return True

    def reclaim_expired(self) -> int:
        """Return expired in_progress items to ready (or failed when out of attempts)."""
        total = 0
        while True:
            now = self.driver.timestamp(self.ctx.now())
            count = self.ctx.run(self._reclaim_batch(now))
            total += count
            if count < RECLAIM_BATCH:
                return total

    def _reclaim_batch(self, now: Any) -> Callable[[], Body[int]]:
        def body() -> Body[int]:
            return len((yield from self.driver.reclaim(now, self.ctx.tenant_id, RECLAIM_BATCH)))

        return body

    # ------------------------------------------------------------------ completions

    def complete(self, items: Completions, operation: str) -> list[str]:
        completion = self.prepare_completion(items, operation)
        return self.ctx.run(completion) if completion is not None else []

    def complete_and_claim(
        self,
        items: Completions,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        tags: list[str] | None,
        path_prefix: str | None,
    ) -> tuple[list[str], list[WorkItem]]:
        completion = self.prepare_completion(items, "complete_and_claim")
        claim = self.prepare_claim(worker_id, limit, lease_seconds, tags, path_prefix)

        def body() -> Body[tuple[list[str], list[WorkItem]]]:
            promoted = (yield from completion()) if completion is not None else []
            return promoted, (yield from claim())

        promoted, claimed = self.ctx.run(body)
        return promoted, _in_ready_order(claimed)

    def prepare_completion(
        self, items: Completions, operation: str
    ) -> Callable[[], Body[list[str]]] | None:
        """Validate completions and return their body's factory (None when there is
        nothing to complete). The body returns the promoted dependents' paths."""
        leases: list[tuple[str, str]] = []
        results: list[tuple[str, Any]] = []
        for item in validate_batch("items", items):
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise InvalidArgumentError(
                    "item", item, "must be a (path, lease_token) or (path, lease_token, result)"
                )
            ref, token = validate_path_or_id(item[0]), check_token(item[1])
            leases.append((ref, token))
            if len(item) == 3 and item[2] is not None:
                results.append((ref, validate_metadata("result", item[2])))
        if len({ref for ref, _ in leases}) != len(leases):
            raise InvalidArgumentError("items", leases, "name the same item more than once")
        if not leases:
            return None
        leases.sort()  # a stable order keeps concurrent batches from deadlocking
        named = [
            Lease(ref, None, token) if is_path_id(ref) else Lease(None, ref, token)
            for ref, token in leases
        ]
        now = self.driver.timestamp(self.ctx.now())

        def body() -> Body[list[str]]:
            done = yield from self.driver.complete(named, now, self.ctx.tenant_id)
            if len(done.held) != len(leases):
                yield from self._raise_not_held(leases, set(done.held), operation)
            if results:
                yield from self._write_results(results)
            if not done.has_dependents:
                return []
            promoted = yield self.driver.call("promoted", {"mark": done.mark})
            return [str(path) for path in promoted.column("virtual_path")]

        return body

    def _write_results(self, results: list[tuple[str, Any]]) -> Body[None]:
        ids = {}
        for ref, _value in results:
            ids[ref] = ref if is_path_id(ref) else (yield from self.ctx.path_id(ref))
        yield from self.ctx.store.blocks.write_metadata(
            [{"path_id": str(ids[ref]), "key": "result", "value": value} for ref, value in results],
        )

    # ------------------------------------------------------------------ single leases

    def heartbeat(self, ref: str, token: str, lease: float | None) -> datetime:
        def body() -> Body[datetime]:
            now_dt = self.ctx.now()
            row = yield from self._lock_held(ref, token, "heartbeat")
            seconds = lease or float(row["lease_seconds"] or DEFAULT_LEASE_SECONDS)
            expires = now_dt + timedelta(seconds=seconds)
            yield self.driver.call(
                "extend_lease",
                {
                    "expires": self.driver.timestamp(expires),
                    "lease": seconds,
                    "path_id": row["path_id"],
                    "token": token,
                },
            )
            yield from self.ctx.record(
                [(row["path_id"], "heartbeat", row["worker_id"], {"lease_seconds": seconds})],
                self.driver.timestamp(now_dt),
            )
            return expires

        return self.ctx.run(body)

    def fail(self, ref: str, token: str, message: str, retry: bool) -> str:
        def body() -> Body[str]:
            now_dt = self.ctx.now()
            now = self.driver.timestamp(now_dt)
            row = yield from self._lock_held(ref, token, "fail_work")
            attempts = row["attempts"]
            run_after = None
            if retry and attempts < (row["max_attempts"] or DEFAULT_MAX_ATTEMPTS):
                delay = self.ctx.retry_policy.delay(attempts)
                run_after = self.driver.timestamp(now_dt + timedelta(seconds=delay))
                status, event = "ready", "retried"
                detail = {"error": message, "attempt": attempts, "delay_seconds": delay}
            else:
                status, event = "failed", "failed"
                detail = {"error": message, "attempt": attempts}
            yield from self._end_lease(
                row["path_id"], token, status, attempts, message, run_after, now
            )
            yield from self.ctx.record([(row["path_id"], event, row["worker_id"], detail)], now)
            return status

        return self.ctx.run(body)

    def release(self, ref: str, token: str) -> None:
        def body() -> Body[None]:
            now = self.driver.timestamp(self.ctx.now())
            row = yield from self._lock_held(ref, token, "release_work")
            attempts = max(0, row["attempts"] - 1)
            yield from self._end_lease(
                row["path_id"], token, "ready", attempts, row["last_error"], None, now
            )
            yield from self.ctx.record([(row["path_id"], "released", row["worker_id"], None)], now)

        self.ctx.run(body)

    def _end_lease(
        self,
        path_id: str,
        token: str,
        status: str,
        attempts: int,
        error: str | None,
        run_after: Any,
        now: Any,
    ) -> Body[None]:
        """End a held lease: to ``ready`` (retry, release) or ``failed`` (dead letter)."""
        yield self.driver.call(
            "end_lease",
            {
                "status": status,
                "run_after": run_after,
                "attempts": attempts,
                "error": error,
                "now": now,
                "path_id": path_id,
                "token": token,
            },
        )

    # ------------------------------------------------------------------ not held

    def _lock_held(self, ref: str, token: str, operation: str) -> Body[dict[str, Any]]:
        """The held item's row (locked on PostgreSQL); raises when ``token`` does not hold it."""
        row = (
            yield self.driver.call(
                "lock_held",
                {
                    "path_id": ref if is_path_id(ref) else None,
                    "path": None if is_path_id(ref) else ref,
                    "tenant": self.ctx.tenant_id,
                    "token": token,
                },
            )
        ).first()
        if row is None:
            raise (yield from self._not_held(ref, token, operation))
        return row

    def _not_held(self, ref: str, token: str, operation: str) -> Body[Exception]:
        """Why ``token`` does not hold ``ref`` (see "Which error" in docs/work-queue.md): no
        such path (NexusFileNotFoundError), no work item (WorkItemNotFoundError), a lease that
        existed and is not this token's (LeaseLostError: the item is in_progress under
        another lease, or was claimed once and has been settled, rescued, revoked or
        cancelled since), or an item never claimed (WorkItemStateError: no lease ever
        existed). Ended leases leave no token behind, so a mistyped token on an item claimed
        before is a lost lease too; the queue cannot tell the two apart."""
        item = yield from self.ctx.require_item(ref)  # raises: no path or no item
        status = item["status"]
        if status == "in_progress":
            return LeaseLostError(ref, token, status)
        claimed = yield self.driver.call("was_claimed", {"path_id": item["path_id"]})
        if claimed.rows:
            return LeaseLostError(ref, token, status)
        return WorkItemStateError(ref, status, ("in_progress",), operation)

    def _raise_not_held(
        self, leases: list[tuple[str, str]], held: set[str], operation: str
    ) -> Body[None]:
        """Raise for the first lease of a batch that is not held (nothing is kept then)."""
        for ref, token in leases:
            path_id = ref if is_path_id(ref) else (yield from self.ctx.path_id(ref))
            if path_id not in held:
                yield from self._lock_held(ref, token, operation)  # raises unless held
        ref, token = leases[0]
        raise LeaseLostError(ref, token)  # pragma: no cover - some lease was not held


def _in_ready_order(items: list[WorkItem]) -> list[WorkItem]:
    """Claimed items in ready-view order (RETURNING gives them in no order)."""
    items.sort(
        key=lambda i: (i["priority"] is None, i["priority"] or 0, i["created_at"], i["path_id"])
    )
    return items
