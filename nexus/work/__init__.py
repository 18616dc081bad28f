"""The work queue layer: claims, leases, retries, dependencies, and the worker runner.

``WorkQueue(store)`` holds a store and runs the queue's named statements
(:mod:`nexus.work.queries`) on it; :class:`Worker` runs a handler over a queue. This package
imports ``nexus.storage``; the storage layer never imports this one.

The names below load on first use (PEP 562), so that importing :mod:`nexus.work.worker` or
:mod:`nexus.work.retry` does not bring SQLAlchemy with the queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nexus.work.queue import EnqueuedItem, WorkItem, WorkQueue
    from nexus.work.retry import RetryPolicy
    from nexus.work.worker import StopWorker, Worker, WorkerStats

__all__ = [
    "EnqueuedItem",
    "RetryPolicy", "StopWorker", "WorkItem", "WorkQueue", "Worker", "WorkerStats",
]

_LAZY = {
    "EnqueuedItem": "nexus.work.queue",
    "RetryPolicy": "nexus.work.retry",
    "StopWorker": "nexus.work.worker",
    "WorkItem": "nexus.work.queue",
    "WorkQueue": "nexus.work.queue",
    "Worker": "nexus.work.worker",
    "WorkerStats": "nexus.work.worker",
}

if not TYPE_CHECKING:  # for mypy, the imports above are the whole namespace

    def __getattr__(name: str) -> object:
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
