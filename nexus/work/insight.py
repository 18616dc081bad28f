"""Insight: the read side the CLI, the web dashboard and the metrics use.

Items (one, several, a page of the failed), dependencies both ways and the chain of blockers,
an item's history, counts from maintained counters, event counters, throughput per hour, the
oldest ready item and the workers seen recently. Every call is one read transaction.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from nexus.errors import InvalidArgumentError, InvalidCursorError, NexusFileNotFoundError
from nexus.storage.calls import Body
from nexus.storage.schema import work_failures_by_error, work_throughput_hourly, work_timing_hourly
from nexus.storage.types import utcnow
from nexus.storage.validation import is_path_id
from nexus.work.context import QueueContext
from nexus.work.drivers.statements import RUN_SECONDS_BUCKETS
from nexus.work.items import STATUSES, WorkItem, item_from_row

#: Path_ids per statement when reading items by id.
CHUNK = 500
#: How deep explain_blocked follows the chain of blockers.
MAX_DEPTH = 100


class Insight:
    """Reads of items, dependencies, history, counters and workers."""

    def __init__(self, ctx: QueueContext) -> None:
        self.ctx = ctx
        self.driver = ctx.driver

    def _read(self, body: Any) -> Any:
        return self.ctx.run(body, write=False)

    # ------------------------------------------------------------------ items

    def work_item(self, ref: str) -> WorkItem | None:
        def body() -> Body[WorkItem | None]:
            row = yield from self.ctx.item(ref)
            return None if row is None else item_from_row(self.driver, row)

        result: WorkItem | None = self._read(body)
        return result

    def work_items(self, ids: list[str]) -> list[WorkItem]:
        def body() -> Body[dict[str, WorkItem]]:
            found: dict[str, WorkItem] = {}
            for start in range(0, len(ids), CHUNK):
                rows = yield self.driver.call(
                    "items_by_ids",
                    {
                        "ids": self.driver.array(ids[start : start + CHUNK]),
                        "tenant": self.ctx.tenant_id,
                    },
                )
                for row in rows.rows:
                    found[row["path_id"]] = item_from_row(self.driver, row)
            return found

        found: dict[str, WorkItem] = self._read(body) if ids else {}
        return [found[path_id] for path_id in ids if path_id in found]

    def failed_page(self, limit: int, after: str | None) -> tuple[list[WorkItem], str | None]:
        after_key: Any = None
        after_id: str | None = None
        if after is not None:
            after_key, after_id = self._decode_failed_cursor(after)
        page = self.driver.call(
            "failed_page",
            {
                "tenant": self.ctx.tenant_id,
                "after_key": after_key,
                "after_id": after_id,
                "limit": limit + 1,
            },
        )

        def body() -> Body[list[dict[str, Any]]]:
            return (yield page).rows

        rows: list[dict[str, Any]] = self._read(body)
        items = [item_from_row(self.driver, row) for row in rows[:limit]]
        cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            key = self.driver.cursor_key(last["failed_key"])
            cursor = base64.urlsafe_b64encode(json.dumps([key, last["path_id"]]).encode()).decode()
        return items, cursor

    def _decode_failed_cursor(self, cursor: Any) -> tuple[Any, str]:
        try:
            key, path_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            if not isinstance(key, str) or not isinstance(path_id, str):
                raise ValueError(cursor)
            moment = datetime.fromisoformat(key)
        except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
            raise InvalidCursorError(cursor, "is not a cursor of the failed list") from exc
        return self.driver.cursor_bound(key, moment), path_id

    # ------------------------------------------------------------------ dependencies

    def _require_path(self, ref: str) -> Body[str]:
        path_id = yield from self.ctx.path_id(ref)
        if path_id is None:
            raise NexusFileNotFoundError(ref)
        return path_id

    def _virtual_path(self, ref: str) -> Body[str]:
        """The virtual path of a live path named by virtual path or path_id."""
        if not is_path_id(ref):
            return ref
        target = yield self.driver.call("target_by_id", {"ref": ref, "tenant": self.ctx.tenant_id})
        return str(target.rows[0]["virtual_path"])

    def _edges(self, path_id: str) -> Body[list[str]]:
        return (yield self.driver.call("edges", {"path_id": path_id})).column("depends_on_ref")

    def _dependency(self, dep_ref: str) -> Body[dict[str, Any]]:
        """One dependency target: ``why`` is None when it is resolved (completed)."""
        name = "target_by_id" if is_path_id(dep_ref) else "target_by_path"
        target = (
            yield self.driver.call(name, {"ref": dep_ref, "tenant": self.ctx.tenant_id})
        ).first()
        if target is None:
            return {"path": dep_ref, "path_id": None, "status": None, "why": "missing"}
        path_id, virtual_path, status = target["path_id"], target["virtual_path"], target["status"]
        if target["deleted_at"] is not None:
            return {"path": virtual_path, "path_id": path_id, "status": None, "why": "deleted"}
        if status == "completed":
            why = None
        elif status is None:
            why = "has no status"
        else:
            why = f"status is {status}, needs completed"
        return {"path": virtual_path, "path_id": path_id, "status": status, "why": why}

    def explain_blocked(self, ref: str) -> list[dict[str, Any]]:
        def body() -> Body[list[dict[str, Any]]]:
            start = yield from self._require_path(ref)
            chain: list[dict[str, Any]] = []
            seen = {start}
            frontier = [(start, (yield from self._virtual_path(ref)))]
            depth = 0
            while frontier and depth < MAX_DEPTH:
                depth += 1
                next_frontier = []
                for path_id, holder in frontier:
                    for dep_ref in (yield from self._edges(path_id)):
                        entry = yield from self._dependency(dep_ref)
                        if entry["why"] is None:
                            continue
                        entry.update(depth=depth, blocks=holder)
                        chain.append(entry)
                        if entry["path_id"] and entry["path_id"] not in seen:
                            seen.add(entry["path_id"])
                            next_frontier.append((entry["path_id"], entry["path"]))
                frontier = next_frontier
            return chain

        result: list[dict[str, Any]] = self._read(body)
        return result

    def dependencies(self, ref: str) -> list[dict[str, Any]]:
        def body() -> Body[list[dict[str, Any]]]:
            path_id = yield from self._require_path(ref)
            found = []
            for dep_ref in (yield from self._edges(path_id)):
                found.append((yield from self._dependency(dep_ref)))
            return found

        result: list[dict[str, Any]] = self._read(body)
        return result

    def dependents(self, ref: str) -> list[dict[str, Any]]:
        def body() -> Body[list[dict[str, Any]]]:
            path_id = yield from self._require_path(ref)
            virtual_path = yield from self._virtual_path(ref)
            found = yield self.driver.call(
                "dependents",
                {"tenant": self.ctx.tenant_id, "path": virtual_path, "path_id": path_id},
            )
            return [
                {"path": row["virtual_path"], "path_id": row["path_id"], "status": row["status"]}
                for row in found.rows
            ]

        result: list[dict[str, Any]] = self._read(body)
        return result

    def history(self, ref: str) -> list[dict[str, Any]]:
        def body() -> Body[list[dict[str, Any]]]:
            path_id = yield from self._require_path(ref)
            found = yield self.driver.call("history", {"path_id": path_id})
            return [
                {
                    "event": row["event"],
                    "at": self.driver.read_timestamp(row["at"]),
                    "worker_id": row["worker_id"],
                    "detail": self.driver.read_json(row["detail"]),
                }
                for row in found.rows
            ]

        result: list[dict[str, Any]] = self._read(body)
        return result

    # ------------------------------------------------------------------ counters

    def stats(self) -> dict[str, Any]:
        def body() -> Body[tuple[dict[str, int], int]]:
            tenant = self.ctx.tenant_id
            found = yield self.driver.call("counters", {"tenant": tenant})
            counters = {str(row["counter"]): int(row["n"]) for row in found.rows}
            now = self.driver.timestamp(utcnow())
            deferred = yield self.driver.call("deferred", {"tenant": tenant, "now": now})
            return counters, int(deferred.rows[0]["n"])

        counters, deferred = self._read(body)
        by_status = {status: counters.get(status, 0) for status in STATUSES}
        ready_now = counters.get("eligible", 0) - deferred
        waiting = counters.get("waiting", 0)
        return {
            "ready_now": ready_now,
            "waiting_on_dependencies": waiting,
            "ready": ready_now,
            "pending": by_status["pending"],
            "blocked": waiting,
            "in_progress": by_status["in_progress"],
            "by_status": by_status,
        }

    def analytics(self) -> dict[str, list[dict[str, Any]]]:
        return self.ctx.store.read_views(
            {
                "throughput_hourly": work_throughput_hourly,
                "failures_by_error": work_failures_by_error,
                "timing_hourly": work_timing_hourly,
            }
        )

    def event_counts(self) -> dict[str, Any]:
        def body() -> Body[list[dict[str, Any]]]:
            return (yield self.driver.call("event_counts", {"tenant": self.ctx.tenant_id})).rows

        events: dict[str, int] = {}
        by_bound: dict[float, int] = {}
        run_count, run_sum, dead_letters = 0, 0.0, 0
        for row in self._read(body):
            name, n, total = str(row["counter"]), int(row["n"]), float(row["total"])
            if name.startswith("run_le:"):
                by_bound[float(name[len("run_le:") :])] = n
            elif name == "run_seconds":
                run_count, run_sum = n, total
            elif name == "dead_letter":
                dead_letters = n
            else:
                events[name] = n
        buckets: list[tuple[float, int]] = []
        cumulative = 0
        for bound in (*RUN_SECONDS_BUCKETS, float("inf")):
            cumulative += by_bound.get(bound, 0)
            buckets.append((bound, cumulative))
        return {
            "events": events,
            "dead_letters": dead_letters,
            "run_seconds": {"count": run_count, "sum": run_sum, "buckets": buckets},
        }

    def oldest_ready_at(self) -> datetime | None:
        def body() -> Body[Any]:
            row = (yield self.driver.call("oldest_ready", {"tenant": self.ctx.tenant_id})).first()
            return None if row is None else row["since"]

        since = self.driver.read_timestamp(self._read(body))
        if since is None or since > utcnow():
            return None  # the first entry is deferred: every ready item is
        return since

    def throughput(self, hours: int) -> list[dict[str, Any]]:
        now = utcnow().replace(minute=0, second=0, microsecond=0)
        since = now - timedelta(hours=hours - 1)
        hourly = self.driver.call(
            "events_hourly", {"tenant": self.ctx.tenant_id, "since": self.driver.timestamp(since)}
        )

        def body() -> Body[list[dict[str, Any]]]:
            return (yield hourly).rows

        counts: dict[datetime, dict[str, Any]] = {
            since + timedelta(hours=i): {
                "hour": since + timedelta(hours=i),
                "completed": 0,
                "failed": 0,
                "retried": 0,
            }
            for i in range(hours)
        }
        for row in self._read(body):
            entry = counts.get(self.driver.read_timestamp(row["hour"]))  # type: ignore[arg-type]
            if entry is not None and row["event"] in entry:
                entry[row["event"]] = int(row["n"])
        return list(counts.values())

    def recent_workers(self, window: int, limit: int) -> list[dict[str, Any]]:
        tenant = self.ctx.tenant_id

        def body() -> Body[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
            seen = yield self.driver.call(
                "recent_workers", {"tenant": tenant, "window": window, "limit": limit}
            )
            holders = yield self.driver.call("holders", {"tenant": tenant})
            return seen.rows, holders.rows

        seen, holders = self._read(body)
        held = {row["worker_id"]: (int(row["holding"]), row["next_expiry"]) for row in holders}
        read = self.driver.read_timestamp
        workers = []
        for row in seen:
            holding, expiry = held.pop(row["worker_id"], (0, None))
            workers.append(
                {
                    "worker_id": row["worker_id"],
                    "last_seen": read(row["last_seen"]),
                    "events": int(row["events"]),
                    "claimed": int(row["claimed"] or 0),
                    "completed": int(row["completed"] or 0),
                    "failed": int(row["failed"] or 0),
                    "holding": holding,
                    "next_lease_expiry": read(expiry),
                }
            )
        # Holders whose last event is older than the window are still seen.
        for worker, (holding, expiry) in sorted(held.items(), key=lambda kv: str(kv[0])):
            if worker is not None and len(workers) < limit:
                workers.append(
                    {
                        "worker_id": worker,
                        "last_seen": None,
                        "events": 0,
                        "claimed": 0,
                        "completed": 0,
                        "failed": 0,
                        "holding": holding,
                        "next_lease_expiry": read(expiry),
                    }
                )
        return workers


def check_path_ids(path_ids: Sequence[str]) -> list[str]:
    """A list of path_ids, deduplicated in order (InvalidArgumentError otherwise)."""
    if isinstance(path_ids, str) or not isinstance(path_ids, Sequence):
        raise InvalidArgumentError("path_ids", path_ids, "must be a list of path_ids")
    for path_id in path_ids:
        if not isinstance(path_id, str) or not is_path_id(path_id):
            raise InvalidArgumentError("path_ids", path_id, "is not a path_id")
    return list(dict.fromkeys(path_ids))
