"""Prometheus metrics on both databases, read back with prometheus_client's own text parser:
the gauges equal ``work_stats()``, the counters count what the queue did (claims,
completions, failures, dead letters, every event), the run-time histogram holds each
completion once, the oldest-ready age tracks the oldest ready item (deferred ones do not
count), labels take only their fixed values (no per-path labels), the counters are the
maintained ones (a plain-SQL history row counts too, and they survive a history purge), and
every call uses its own registry (two queues never mix)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from nexus.storage.types import utcnow
from nexus.web.metrics import EVENTS, STATUSES, render_metrics
from nexus.work import RetryPolicy, WorkQueue


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _families(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def _run(queue: WorkQueue) -> None:
    """3 enqueued; 2 claimed twice over (one retried then dead-lettered); 1 completed."""
    queue.retry_policy = RetryPolicy(base_seconds=0, max_seconds=0, jitter=0)
    queue.enqueue_many([{"path": f"/m/{i}", "priority": i, "max_attempts": 2} for i in range(3)])
    first, second = queue.claim_ready_work("w", limit=2)
    queue.complete_work(first["virtual_path"], first["lease_token"])
    assert queue.fail_work(second["virtual_path"], second["lease_token"], "x") == "ready"
    (again,) = queue.claim_ready_work("w", path_prefix=second["virtual_path"])
    assert queue.fail_work(again["virtual_path"], again["lease_token"], "y") == "failed"


def test_metrics_parse_and_match_the_queue(queue: WorkQueue) -> None:
    _run(queue)
    text = render_metrics(queue)
    samples = _samples(text)
    stats = queue.work_stats()
    for status in STATUSES:
        assert _value(samples, "nexus_work_items", status=status) == stats["by_status"][status]
    assert _value(samples, "nexus_work_ready") == stats["ready"] == 1
    assert _value(samples, "nexus_work_blocked") == stats["blocked"]
    assert _value(samples, "nexus_work_claims_total") == 3
    assert _value(samples, "nexus_work_completions_total") == 1
    assert _value(samples, "nexus_work_failures_total") == 2
    assert _value(samples, "nexus_work_dead_letters_total") == 1
    assert _value(samples, "nexus_work_events_total", event="enqueued") == 3
    assert _value(samples, "nexus_work_events_total", event="retried") == 1
    assert _value(samples, "nexus_work_run_seconds_count") == 1
    assert _value(samples, "nexus_work_run_seconds_bucket", le="+Inf") == 1
    assert 0 <= _value(samples, "nexus_work_run_seconds_sum") < 60
    assert _families(text) == {
        "nexus_work_items": "gauge",
        "nexus_work_ready": "gauge",
        "nexus_work_blocked": "gauge",
        "nexus_work_oldest_ready_age_seconds": "gauge",
        "nexus_work_claims": "counter",
        "nexus_work_completions": "counter",
        "nexus_work_failures": "counter",
        "nexus_work_dead_letters": "counter",
        "nexus_work_events": "counter",
        "nexus_work_run_seconds": "histogram",
    }


def test_ready_and_blocked_gauges_count_the_views_and_say_so(queue: WorkQueue) -> None:
    """nexus_work_ready / nexus_work_blocked count the items ready now / waiting on
    dependencies (the views' rows), not the statuses ready / blocked, and their HELP says
    which is which; here the two ideas give different numbers."""
    queue.enqueue("/v/first")
    queue.enqueue("/v/waits", depends_on=["/v/first", "/v/nowhere"])  # status ready
    queue.enqueue("/v/parked", status="pending", depends_on="/v/first")
    queue.enqueue("/v/held", status="blocked")  # waits on nothing
    queue.enqueue("/v/later", run_after=utcnow() + timedelta(hours=1))
    text = render_metrics(queue)
    samples = _samples(text)
    ready_now = len(queue.store.get_ready_work())
    waiting = len(queue.store.get_blocked_work())
    assert (ready_now, waiting) == (1, 2)
    assert _value(samples, "nexus_work_ready") == ready_now
    assert _value(samples, "nexus_work_blocked") == waiting
    assert _value(samples, "nexus_work_items", status="ready") == 3
    assert _value(samples, "nexus_work_items", status="blocked") == 1
    helps = {family.name: family.documentation for family in text_string_to_metric_families(text)}
    assert helps["nexus_work_ready"].startswith("Work items ready now:")
    assert helps["nexus_work_blocked"].startswith("Work items waiting on dependencies:")
    assert helps["nexus_work_items"].startswith("Status counts:")


def test_labels_are_bounded(queue: WorkQueue) -> None:
    queue.enqueue_many([{"path": f"/many/{i}"} for i in range(50)])
    for held in queue.claim_ready_work("w", limit=50):
        queue.complete_work(held["virtual_path"], held["lease_token"])
    labels = {
        (name, key, value)
        for (name, pairs) in _samples(render_metrics(queue))
        for key, value in pairs
    }
    assert {value for name, key, value in labels if key == "status"} == set(STATUSES)
    assert {value for name, key, value in labels if key == "event"} == set(EVENTS)
    assert {key for _, key, _ in labels} == {"status", "event", "le"}
    assert not any("/many/" in value for _, _, value in labels)


def test_run_time_histogram_buckets(queue: WorkQueue, raw_engine: sa.Engine) -> None:
    queue.enqueue_many([{"path": "/h/fast"}, {"path": "/h/slow"}])
    fast, slow = queue.claim_ready_work("w", limit=2)
    queue.complete_work(fast["virtual_path"], fast["lease_token"])
    # A completion recorded as 100 s after its claim (history rows count however written).
    with raw_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)"
                " VALUES (:p, 'default', 'completed', :at, 'w', :d)"
            ),
            {
                "p": slow["path_id"],
                "at": queue.db.timestamp(utcnow()),
                "d": '{"attempt": 1, "run_seconds": 100.0}',
            },
        )
    samples = _samples(render_metrics(queue))
    bucket = lambda le: _value(samples, "nexus_work_run_seconds_bucket", le=le)  # noqa: E731
    assert bucket("60.0") == 1 and bucket("300.0") == 2 and bucket("+Inf") == 2
    assert _value(samples, "nexus_work_run_seconds_count") == 2
    assert 100 <= _value(samples, "nexus_work_run_seconds_sum") < 160
    assert _value(samples, "nexus_work_completions_total") == 2


def test_oldest_ready_age(queue: WorkQueue, raw_engine: sa.Engine) -> None:
    assert _value(_samples(render_metrics(queue)), "nexus_work_oldest_ready_age_seconds") == 0
    later = utcnow() + timedelta(hours=1)
    queue.enqueue("/age/deferred", run_after=later)
    assert queue.oldest_ready_at() is None
    assert _value(_samples(render_metrics(queue)), "nexus_work_oldest_ready_age_seconds") == 0
    queue.enqueue("/age/old")
    with raw_engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE work_items SET created_at = :at WHERE path_id = ("
                "SELECT path_id FROM file_paths WHERE virtual_path = '/age/old')"
            ),
            {"at": queue.db.timestamp(utcnow() - timedelta(seconds=120))},
        )
    age = _value(_samples(render_metrics(queue)), "nexus_work_oldest_ready_age_seconds")
    assert 120 <= age < 180
    (held,) = queue.claim_ready_work("w")
    assert held["virtual_path"] == "/age/old"
    assert queue.oldest_ready_at() is None


def test_counters_survive_a_history_purge(queue: WorkQueue, raw_engine: sa.Engine) -> None:
    _run(queue)
    with raw_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM work_history"))
    samples = _samples(render_metrics(queue))
    assert _value(samples, "nexus_work_claims_total") == 3
    assert _value(samples, "nexus_work_dead_letters_total") == 1


def test_each_call_has_its_own_registry(queue: WorkQueue, make_queue: Any) -> None:
    other = make_queue(tenant_id="other")
    queue.enqueue("/tenant/a")
    ours, theirs = _samples(render_metrics(queue)), _samples(render_metrics(other))
    assert _value(ours, "nexus_work_items", status="ready") == 1
    assert _value(theirs, "nexus_work_items", status="ready") == 0
    assert _value(theirs, "nexus_work_events_total", event="enqueued") == 0
