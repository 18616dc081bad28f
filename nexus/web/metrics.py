"""Prometheus metrics of a work queue, in the text exposition format.

:func:`render_metrics` reads maintained counters only (``work_stats()``: the status counters
of revision 0005; ``work_event_counts()``: the history counters of revision 0006; one index
look-up for the oldest ready item), so a scrape costs the same at a thousand items or a
million. Every label has a fixed, small set of values (statuses, event names): no per-path or
per-worker labels. A private :class:`~prometheus_client.CollectorRegistry` is built per call,
never the global one, so several queues (or tests) never share state. docs/metrics.md lists
every metric.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from nexus.storage.types import utcnow
from nexus.work import WorkQueue

#: The statuses and history events reported; a label takes no other value.
STATUSES = ("ready", "pending", "blocked", "in_progress", "completed", "failed")
EVENTS = (
    "enqueued",
    "claimed",
    "heartbeat",
    "completed",
    "retried",
    "failed",
    "released",
    "reclaimed",
    "cancelled",
    "requeued",
    "promoted",
)


class QueueCollector(Collector):
    """Collects the metrics of one queue at each scrape."""

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        stats = self.queue.work_stats()
        counts = self.queue.work_event_counts()
        oldest = self.queue.oldest_ready_at()
        events: dict[str, int] = counts["events"]

        items = GaugeMetricFamily(
            "nexus_work_items",
            "Status counts: work items per value of their status key (an item of status ready "
            "may still wait on dependencies: nexus_work_ready counts the items ready now).",
            labels=["status"],
        )
        for status in STATUSES:
            items.add_metric([status], stats["by_status"][status])
        yield items
        yield GaugeMetricFamily(
            "nexus_work_ready",
            "Work items ready now: status ready, every dependency completed, run_after reached "
            '(not the status count nexus_work_items{status="ready"}).',
            value=stats["ready_now"],
        )
        yield GaugeMetricFamily(
            "nexus_work_blocked",
            "Work items waiting on dependencies: status ready, pending or blocked and a "
            'dependency not completed (not the status count nexus_work_items{status="blocked"}).',
            value=stats["waiting_on_dependencies"],
        )
        age = 0.0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds())
        yield GaugeMetricFamily(
            "nexus_work_oldest_ready_age_seconds",
            "Seconds the item ready now the longest has been ready (0 when none is).",
            value=round(age, 3),
        )
        named = [
            ("nexus_work_claims", "Claims (items moved to in_progress).", events.get("claimed", 0)),
            ("nexus_work_completions", "Completions.", events.get("completed", 0)),
            (
                "nexus_work_failures",
                "Failures reported by workers (retried or dead-lettered).",
                events.get("retried", 0) + events.get("failed", 0),
            ),
            (
                "nexus_work_dead_letters",
                "Items that ran out of attempts (failed, or an expired lease on the last one).",
                counts["dead_letters"],
            ),
        ]
        for name, doc, value in named:
            yield CounterMetricFamily(name, doc, value=value)
        by_event = CounterMetricFamily(
            "nexus_work_events", "History events recorded, by event.", labels=["event"]
        )
        for event in EVENTS:
            by_event.add_metric([event], events.get(event, 0))
        yield by_event
        run = counts["run_seconds"]
        yield HistogramMetricFamily(
            "nexus_work_run_seconds",
            "Claim-to-complete time of completed items (seconds).",
            buckets=[(_bound(upper), count) for upper, count in run["buckets"]],
            sum_value=run["sum"],
        )


def _bound(upper: float) -> str:
    return "+Inf" if upper == float("inf") else repr(upper)


def render_metrics(queue: WorkQueue) -> str:
    """The queue's metrics in the Prometheus text format (what ``/metrics`` serves)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(queue))
    return generate_latest(registry).decode("utf-8")
