"""Bad input gets a typed nexus error before anything is written, on both databases: text no
driver can encode (a lone surrogate) anywhere a string goes in, limits beyond what a driver
binds, and database URLs that cannot be used. A handler's error text is recorded, escaped,
never refused."""

from __future__ import annotations

from typing import Any

import pytest

from nexus.errors import (
    InvalidArgumentError,
    InvalidMetadataError,
    InvalidPathError,
    NexusConfigError,
    NexusError,
)
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue

SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s, q: s.put(f"/a{SURROGATE}"), InvalidPathError),
        (lambda s, q: s.set_file_metadata("/ok", f"k{SURROGATE}", 1), InvalidMetadataError),
        (lambda s, q: s.set_file_metadata("/ok", "k", {"v": [SURROGATE]}), InvalidMetadataError),
        (lambda s, q: s.set_file_metadata("/ok", "worker_id", SURROGATE), InvalidMetadataError),
        (lambda s, q: s.set_file_metadata_many([("/ok", "k", SURROGATE)]), InvalidMetadataError),
        (lambda s, q: q.enqueue(f"/q{SURROGATE}"), InvalidPathError),
        (lambda s, q: q.enqueue("/q", tags=[SURROGATE]), InvalidMetadataError),
        (lambda s, q: q.enqueue("/q", idempotency_key=SURROGATE), InvalidArgumentError),
        (lambda s, q: q.claim_ready_work(f"w{SURROGATE}"), InvalidArgumentError),
        (lambda s, q: q.claim_ready_work("w", tags=[SURROGATE]), InvalidMetadataError),
        (lambda s, q: q.complete_work("/ok", f"t{SURROGATE}"), InvalidArgumentError),
        (lambda s, q: q.complete_work_many([5]), InvalidArgumentError),
        (lambda s, q: q.complete_work_many([("/ok",)]), InvalidArgumentError),
    ],
)
def test_bad_text_is_a_typed_error_and_writes_nothing(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, call: Any, error: type[Exception]
) -> None:
    store.put("/ok")
    before = (store.get_all_file_metadata("/ok"), [r.virtual_path for r in store.list()])
    with pytest.raises(error):
        call(store, queue)
    assert (store.get_all_file_metadata("/ok"), [r.virtual_path for r in store.list()]) == before
    assert queue.work_stats()["by_status"]["ready"] == 0


def test_a_handler_error_with_undecodable_text_is_recorded(queue: WorkQueue) -> None:
    queue.enqueue("/f", max_attempts=1)
    (item,) = queue.claim_ready_work("w")
    assert queue.fail_work(item["path_id"], str(item["lease_token"]), f"bad {SURROGATE}\x00") == (
        "failed"
    )
    failed = queue.get_work_item("/f")
    assert failed is not None and failed["last_error"] == "bad \\ud800\\x00"


def test_limits_beyond_32_bits_return_everything(
    store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    queue.enqueue_many([{"path": f"/l/{i}"} for i in range(3)])
    for limit in (2**31, 2**63, 2**70):
        assert len(store.get_ready_work(limit=limit)) == 3
        assert len(store.get_work_by_priority(limit=limit)) == 3
    assert len(queue.claim_ready_work("w", limit=2**62)) == 3


@pytest.mark.parametrize(
    "url",
    ["postgresql://u@h:port/db", "postgresql+nosuchdriver://u@h/db", "mysql://u@h/db", ""],
)
def test_unusable_database_urls_are_config_errors(url: str) -> None:
    with pytest.raises(NexusConfigError) as caught:
        SQLAlchemyMetadataStore(url)
    assert isinstance(caught.value, NexusError)


def test_tenant_ids_are_checked(db_url: str) -> None:
    for tenant in ("", "t" * 256, f"t{SURROGATE}", "a\x00b"):
        with pytest.raises(NexusConfigError):
            SQLAlchemyMetadataStore(db_url, tenant_id=tenant)
