"""Every class of bad input, through the public API, on both databases: the exception class,
the shape of its message, and that nothing was written. One row per line of the table in
docs/reliability.md ("Bad input"), under the same name, so the table is backed row by row."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import nexus
from nexus.errors import (
    DependencyCycleError,
    InvalidArgumentError,
    InvalidMetadataError,
    InvalidPathError,
    LeaseLostError,
    NexusConfigError,
    NexusError,
    NexusFileNotFoundError,
    WorkItemNotFoundError,
    WorkItemStateError,
)
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import RetryPolicy, Worker, WorkQueue

Call = Callable[[SQLAlchemyMetadataStore, WorkQueue], Any]
SURROGATE = "\ud800"
WEST = timezone(timedelta(hours=-1))

# (row name in docs/reliability.md, call, exception class, message pattern)
# fmt: off
CASES: list[tuple[str, Call, type[Exception], str]] = [
    # ---- paths
    ("path not a string", lambda s, q: s.put(b"/a"), InvalidPathError,
     r"^invalid path b'/a': must be a string$"),
    ("path not absolute", lambda s, q: q.enqueue("jobs/a"), InvalidPathError,
     r"^invalid path 'jobs/a': must start with '/'$"),
    ("path too long", lambda s, q: s.put("/" + "a" * 4096), InvalidPathError,
     r"^invalid path '/a+': longer than 4096 characters$"),
    ("path with a control character", lambda s, q: s.put("/a\nb"), InvalidPathError,
     r"^invalid path '/a\\nb': contains a NUL or control character$"),
    ("path with a lone surrogate", lambda s, q: s.put(f"/a{SURROGATE}"), InvalidPathError,
     r"^invalid path '/a\\ud800': is not valid Unicode text \(a lone surrogate\)$"),
    ("path with a '..' segment", lambda s, q: s.put("/a/../b"), InvalidPathError,
     r"^invalid path '/a/\.\./b': contains a '\.\.' segment$"),
    ("prefix not a path", lambda s, q: q.claim_ready_work("w", path_prefix="jobs"),
     InvalidPathError, r"^invalid path 'jobs': a prefix must be a string starting with '/'$"),
    ("path that does not exist", lambda s, q: s.set_file_metadata("/nowhere", "k", 1),
     NexusFileNotFoundError, r"^no such path: '/nowhere'$"),
    # ---- metadata keys and values
    ("key empty or not a string", lambda s, q: s.set_file_metadata("/ok", "", 1),
     InvalidMetadataError, r"^invalid metadata ''=None: key must be a non-empty string$"),
    ("key too long or with a control character",
     lambda s, q: s.set_file_metadata("/ok", "k" * 256, 1), InvalidMetadataError,
     r"^invalid metadata 'k+'=None: key is too long or contains control characters$"),
    ("key with a lone surrogate", lambda s, q: s.set_file_metadata("/ok", f"k{SURROGATE}", 1),
     InvalidMetadataError, r"key is not valid Unicode text \(a lone surrogate\)$"),
    ("value with a NUL or a lone surrogate",
     lambda s, q: s.set_file_metadata("/ok", "k", {"v": ["a\x00"]}), InvalidMetadataError,
     r"^invalid metadata 'k'=.*: contains a NUL character or a lone surrogate$"),
    ("value not JSON", lambda s, q: s.set_file_metadata("/ok", "k", float("nan")),
     InvalidMetadataError, r"^invalid metadata 'k'=nan: is not JSON-serialisable$"),
    ("result not JSON", lambda s, q: q.complete_work("/held", "t", result={1, 2}),
     InvalidMetadataError, r"^invalid metadata 'result'=\{1, 2\}: is not JSON-serialisable$"),
    ("status not one of the six", lambda s, q: q.enqueue("/e", status="done"),
     InvalidMetadataError,
     r"^invalid metadata 'status'='done': must be one of ready, pending, blocked, "
     r"in_progress, completed, failed$"),
    ("priority not an int", lambda s, q: q.enqueue("/e", priority=1.5), InvalidMetadataError,
     r"^invalid metadata 'priority'=1\.5: must be an int or None$"),
    ("priority beyond 64 bits", lambda s, q: s.set_file_metadata("/ok", "priority", 2**63),
     InvalidMetadataError, r"^invalid metadata 'priority'=\d+: must fit in 64 bits$"),
    ("tags not a list of strings", lambda s, q: q.enqueue("/e", tags="urgent"),
     InvalidMetadataError, r"^invalid metadata 'tags'='urgent': must be a list of strings$"),
    ("depends_on of the wrong type", lambda s, q: q.enqueue("/e", depends_on=5),
     InvalidMetadataError,
     r"^invalid metadata 'depends_on'=5: must be a path, a path_id or a list$"),
    ("depends_on naming a bad path", lambda s, q: q.enqueue("/e", depends_on=["/a", "b"]),
     InvalidMetadataError, r"^invalid metadata 'depends_on'=\['/a', 'b'\]: must start with '/'$"),
    ("depends_on making a cycle", lambda s, q: q.enqueue("/cycle/a", depends_on="/cycle/a"),
     DependencyCycleError,
     r"^invalid metadata 'depends_on'='/cycle/a': would create a dependency cycle through "
     r"/cycle/a$"),
    ("started_at not a timestamp", lambda s, q: s.set_file_metadata("/ok", "started_at", "soon"),
     InvalidMetadataError,
     r"^invalid metadata 'started_at'='soon': must be an ISO-8601 timestamp$"),
    ("started_at of the wrong type", lambda s, q: s.set_file_metadata("/ok", "started_at", 17),
     InvalidMetadataError,
     r"^invalid metadata 'started_at'=17: must be an ISO-8601 string or a datetime$"),
    ("started_at out of range in UTC",
     lambda s, q: s.set_file_metadata("/ok", "started_at", datetime(9999, 12, 31, 23, tzinfo=WEST)),
     InvalidMetadataError, r"^invalid metadata 'started_at'=datetime\.datetime\(9999, .*\): "
     r"is out of range in UTC$"),
    ("worker_id metadata not a string", lambda s, q: s.set_file_metadata("/ok", "worker_id", 7),
     InvalidMetadataError, r"^invalid metadata 'worker_id'=7: must be a string or None$"),
    # ---- call arguments
    ("view limit negative or not an int", lambda s, q: s.get_ready_work(limit=-1),
     InvalidArgumentError, r"^invalid limit -1: must be None or a non-negative int$"),
    ("claim limit not positive", lambda s, q: q.claim_ready_work("w", limit=0),
     InvalidArgumentError, r"^invalid limit 0: must be a positive 64-bit int$"),
    ("max_attempts not positive", lambda s, q: q.enqueue("/e", max_attempts=0),
     InvalidArgumentError, r"^invalid max_attempts 0: must be a positive 64-bit int$"),
    ("size negative", lambda s, q: s.put("/e", size=-1), InvalidArgumentError,
     r"^invalid size -1: must be a non-negative 64-bit int$"),
    ("content_hash or file_type not a string", lambda s, q: s.put("/e", file_type=3),
     InvalidArgumentError, r"^invalid file_type 3: must be a string or None$"),
    ("content_hash or file_type with a lone surrogate",
     lambda s, q: s.put("/e", content_hash=SURROGATE), InvalidArgumentError,
     r"^invalid content_hash '\\ud800': contains a NUL character or a lone surrogate$"),
    ("lease_seconds not a positive number (up to a year)",
     lambda s, q: q.claim_ready_work("w", lease_seconds=0), InvalidArgumentError,
     r"^invalid lease_seconds 0: must be a positive number of seconds$"),
    ("worker_id, token or idempotency key empty", lambda s, q: q.claim_ready_work(""),
     InvalidArgumentError, r"^invalid worker_id '': must be a non-empty string$"),
    ("worker_id, token or idempotency key with a NUL or a lone surrogate",
     lambda s, q: q.enqueue("/e", idempotency_key="k\x00"), InvalidArgumentError,
     r"^invalid idempotency_key 'k\\x00': contains a NUL character or a lone surrogate$"),
    ("token or idempotency key too long", lambda s, q: q.complete_work("/held", "t" * 65),
     InvalidArgumentError, r"^invalid lease_token 't+': must be at most 64 characters$"),
    ("enqueue item not a mapping", lambda s, q: q.enqueue_many(["/e"]), InvalidArgumentError,
     r"^invalid item '/e': must be a mapping with a 'path'$"),
    ("item with unknown keys", lambda s, q: q.enqueue_many([{"path": "/e", "prio": 1}]),
     InvalidArgumentError, r"^invalid item \{.*\}: unknown keys \['prio'\]$"),
    ("put_many item not a path or a mapping", lambda s, q: s.put_many([5]),
     InvalidArgumentError, r"^invalid item 5: must be a path or a mapping with a 'path'$"),
    ("run_after not a datetime", lambda s, q: q.enqueue("/e", run_after="2030-01-01"),
     InvalidArgumentError, r"^invalid run_after '2030-01-01': must be a datetime or None$"),
    ("completion not a (path, token[, result])", lambda s, q: q.complete_work_many([("/held",)]),
     InvalidArgumentError,
     r"^invalid item \('/held',\): must be a \(path, lease_token\) or "
     r"\(path, lease_token, result\)$"),
    ("completion naming an item twice",
     lambda s, q: q.complete_work_many([("/held", "t"), ("/held", "u")]), InvalidArgumentError,
     r"^invalid items .*: name the same item more than once$"),
    ("metadata row not a (path, key, value)", lambda s, q: s.set_file_metadata_many([("/ok",)]),
     InvalidArgumentError, r"^invalid row \('/ok',\): must be a \(path, key, value\) tuple$"),
    ("batch not an iterable", lambda s, q: q.enqueue_many(5), InvalidArgumentError,
     r"^invalid items 5: must be a list \(or another iterable\)$"),
    ("prune age reaching back before the year 1",
     lambda s, q: q.prune(timedelta(days=999_999_999)), InvalidArgumentError,
     r"^invalid older_than datetime\.timedelta\(.*\): reaches back before the year 1$"),
    ("timeout negative", lambda s, q: q.wait_for_ready_work(-1), InvalidArgumentError,
     r"^invalid timeout -1: must be a non-negative number$"),
    ("retry policy out of range", lambda s, q: RetryPolicy(jitter=1.5), InvalidArgumentError,
     r"^invalid retry_policy RetryPolicy\(.*\): jitter must be in \[0, 1\)$"),
    ("retry policy not numbers", lambda s, q: RetryPolicy(base_seconds="1"), InvalidArgumentError,
     r"^invalid retry_policy RetryPolicy\(.*\): base_seconds must be a finite number$"),
    ("worker handler not callable", lambda s, q: Worker(q, "print"), InvalidArgumentError,
     r"^invalid handler 'print': must be callable$"),
    ("worker concurrency not a positive int", lambda s, q: Worker(q, print, concurrency=0),
     InvalidArgumentError, r"^invalid concurrency 0: must be a positive int$"),
    ("worker seconds not positive numbers", lambda s, q: Worker(q, print, poll_interval="1"),
     InvalidArgumentError, r"^invalid poll_interval '1': must be a positive number of seconds$"),
    ("worker id or tags refused by claims", lambda s, q: Worker(q, print, tags="etl"),
     InvalidMetadataError, r"^invalid metadata 'tags'='etl': must be a list of strings$"),
    # ---- state
    ("lease not held (another lease holds the item)",
     lambda s, q: q.complete_work("/held", "not-the-token"), LeaseLostError,
     r"^lease 'not-the-token' on '/held' is no longer held \(another lease holds it\)$"),
    ("lease not held (the item was claimed once and has been settled since)",
     lambda s, q: q.fail_work("/done", "old-token", "late"), LeaseLostError,
     r"^lease 'old-token' on '/done' is no longer held \(the item is completed now\)$"),
    ("lease call on an item never claimed", lambda s, q: q.release_work("/fresh", "x"),
     WorkItemStateError, r"^'/fresh' is ready; release_work needs in_progress$"),
    ("path that is no work item (any queue call naming one item)",
     lambda s, q: q.cancel_work("/ok"), WorkItemNotFoundError, r"^'/ok' is not a work item$"),
    ("cancelling a completed item", lambda s, q: q.cancel_work("/done"), WorkItemStateError,
     r"^'/done' is completed; cancel_work needs ready, pending, blocked, in_progress or failed$"),
    ("retrying an item that has not failed", lambda s, q: q.retry_work("/held"),
     WorkItemStateError, r"^'/held' is in_progress; retry_work needs failed$"),
    ("revoking the lease of an item not in progress", lambda s, q: q.revoke_lease("/fresh"),
     WorkItemStateError, r"^'/fresh' is ready; revoke_lease needs in_progress$"),
]
# fmt: on


def _state(store: SQLAlchemyMetadataStore, queue: WorkQueue) -> Any:
    return (
        [record.virtual_path for record in store.list()],
        store.get_all_file_metadata("/ok"),
        queue.work_stats()["by_status"],
        [
            (path, event["event"])
            for path in ("/held", "/done", "/fresh")
            for event in queue.get_work_history(path)
        ],
        [queue.get_work_item(path) for path in ("/held", "/done", "/fresh")],
    )


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [pytest.param(call, error, message, id=name) for name, call, error, message in CASES],
)
def test_bad_input_gets_its_typed_error_and_writes_nothing(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
    call: Call,
    error: type[Exception],
    message: str,
) -> None:
    store.put("/ok")
    queue.enqueue("/done")
    [done] = queue.claim_ready_work("setup")
    queue.complete_work("/done", str(done["lease_token"]))
    queue.enqueue("/held")
    queue.claim_ready_work("setup")
    queue.enqueue("/fresh")  # ready, never claimed
    before = _state(store, queue)
    with pytest.raises(error) as caught:
        call(store, queue)
    assert type(caught.value) is error
    assert isinstance(caught.value, NexusError)
    assert re.search(message, str(caught.value)), str(caught.value)
    assert _state(store, queue) == before


# fmt: off
CONFIG_CASES: list[tuple[str, Callable[[Path], Any], str]] = [
    ("database URL empty", lambda tmp: SQLAlchemyMetadataStore(""),
     r"^empty database path or URL$"),
    ("database URL unparsable", lambda tmp: SQLAlchemyMetadataStore("postgresql://u@h:port/db"),
     r"^not a database URL: 'postgresql://u@h:port/db'; expected a SQLite file path, "),
    ("database URL with one slash", lambda tmp: SQLAlchemyMetadataStore("postgresql:/u@h/db"),
     r"^not a database URL: 'postgresql:/u@h/db'; expected .* or postgresql://user"),
    ("SQLite URL with a host", lambda tmp: SQLAlchemyMetadataStore("sqlite://x.db"),
     r"^not a database URL: 'sqlite://x.db'; a SQLite URL has no host; expected "),
    ("database not SQLite or PostgreSQL", lambda tmp: SQLAlchemyMetadataStore("mysql://u@h/db"),
     r"^unsupported database 'mysql': use SQLite or PostgreSQL$"),
    ("database driver unknown",
     lambda tmp: SQLAlchemyMetadataStore("postgresql+nosuchdriver://u@h/db"),
     r"^cannot use database URL .*: "),
    ("database target not a path or a URL", lambda tmp: SQLAlchemyMetadataStore(5),
     r"^not a database path or URL: 5$"),
    ("both a path and a URL",
     lambda tmp: SQLAlchemyMetadataStore(tmp / "a.db", db_url=f"sqlite:///{tmp}/b.db"),
     r"^give either db_path or db_url, not both$"),
    ("tenant_id empty, too long, NUL or a lone surrogate",
     lambda tmp: SQLAlchemyMetadataStore(tmp / "a.db", tenant_id="a\x00b"),
     r"^tenant_id must be a non-empty string of at most 255 characters$"),
    ("connect config with unknown keys",
     lambda tmp: nexus.connect(config={"data_dir": str(tmp), "datadir": "x"}),
     r"^unknown config keys: \['datadir'\]$"),
    ("connect config not a mapping", lambda tmp: nexus.connect(config=[("data_dir", "x")]),
     r"^config must be a mapping, not list$"),
]
# fmt: on


@pytest.mark.parametrize(
    ("call", "message"),
    [pytest.param(call, message, id=name) for name, call, message in CONFIG_CASES],
)
def test_unusable_configuration_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: Callable[[Path], Any], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NexusConfigError) as caught:
        call(tmp_path)
    assert re.search(message, str(caught.value)), str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created


def test_no_database_at_all_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)
    with pytest.raises(NexusConfigError, match=r"^no database: pass a SQLite path or a URL"):
        SQLAlchemyMetadataStore()


def test_a_closed_store_says_so(store: SQLAlchemyMetadataStore) -> None:
    store.close()
    with pytest.raises(NexusError, match=r"^the store is closed$"):
        store.put("/after")
