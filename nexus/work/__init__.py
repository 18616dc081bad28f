"""The work queue layer: claims, leases, retries, dependencies, and the worker runner.

``WorkQueue(store)`` holds a store and runs the queue's named statements
(:mod:`nexus.work.queries`) on it; :class:`Worker` runs a handler over a queue. This package
imports ``nexus.storage``; the storage layer never imports this one.
"""

from nexus.work.queue import EnqueuedItem, WorkItem, WorkQueue
from nexus.work.retry import RetryPolicy
from nexus.work.worker import Worker, WorkerStats

__all__ = ["EnqueuedItem", "RetryPolicy", "WorkItem", "WorkQueue", "Worker", "WorkerStats"]
