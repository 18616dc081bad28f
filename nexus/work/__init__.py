"""The work queue layer: claims, leases, retries, dependencies, and the worker runner.

The queue operations are methods of the store (``store.claim_ready_work(...)``); this package
holds their logic (:mod:`nexus.work.queue`), the retry policy, the ready-work waiter and the
:class:`Worker` runner.
"""

from nexus.work.retry import RetryPolicy
from nexus.work.worker import Worker, WorkerStats

__all__ = ["RetryPolicy", "Worker", "WorkerStats"]
