"""Key/value metadata on SQLite and PostgreSQL: values are any JSON and round-trip exactly,
writes are upserts (one row per path and key), reads work by path or path_id, and a rejected
write (missing path, invalid work value) raises a typed error and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from nexus.errors import (
    InvalidMetadataError,
    InvalidPathError,
    NexusFileNotFoundError,
)
from nexus.storage.metadata_store import SQLAlchemyMetadataStore

JSON_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -42,
    2**53 + 1,
    2**70,
    1.5,
    -0.25,
    "",
    "plain",
    'ünïcödé 日本語 😀 "quotes" \\ backslash \n newline',
    [],
    {},
    [1, "two", None, 3.5, [4, [5]], {"six": 6}],
    {"nested": {"deep": {"list": [1, {"x": None}], "flag": False}}, "ü": "€"},
    {"": "empty key", "a.b": 1, "$": [None]},
]


def _views(store: SQLAlchemyMetadataStore) -> list[list[dict[str, Any]]]:
    return [
        store.get_ready_work(),
        store.get_pending_work(),
        store.get_blocked_work(),
        store.get_work_by_priority(),
        store.get_in_progress_work(),
    ]


def test_any_json_value_round_trips(store: SQLAlchemyMetadataStore) -> None:
    path_id = store.put("/m").path_id
    expected = {}
    for index, value in enumerate(JSON_VALUES):
        key = f"k{index:02d}"
        store.set_file_metadata("/m", key, value)
        expected[key] = value
        got = store.get_file_metadata("/m", key)
        assert got == value and type(got) is type(value), (key, value, got)
        assert store.get_file_metadata(path_id, key) == value
    assert store.get_all_file_metadata("/m") == expected
    assert store.get_all_file_metadata(path_id) == expected


def test_unset_keys_read_as_none(store: SQLAlchemyMetadataStore) -> None:
    store.put("/m")
    assert store.get_file_metadata("/m", "nothing") is None
    assert store.get_all_file_metadata("/m") == {}


def test_set_is_an_upsert(store: SQLAlchemyMetadataStore, raw_engine: sa.Engine) -> None:
    store.put("/m")
    for value in (1, "two", [3], {"four": 4}):
        store.set_file_metadata("/m", "k", value)
    assert store.get_file_metadata("/m", "k") == {"four": 4}
    assert store.get_all_file_metadata("/m") == {"k": {"four": 4}}
    with raw_engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM file_metadata")).scalar()
    assert count == 1


def test_delete_metadata(store: SQLAlchemyMetadataStore, add_item: Callable[..., str]) -> None:
    path_id = add_item("/m", "ready", priority=3, note="x")
    assert store.delete_file_metadata("/m", "note") is True
    assert store.delete_file_metadata("/m", "note") is False
    assert store.delete_file_metadata(path_id, "never-set") is False
    assert store.get_file_metadata("/m", "note") is None
    assert store.get_all_file_metadata("/m") == {"status": "ready", "priority": 3}
    # Deleting a work key updates the views.
    store.delete_file_metadata(path_id, "priority")
    assert [r["priority"] for r in store.get_ready_work()] == [None]
    store.delete_file_metadata("/m", "status")
    assert _views(store) == [[], [], [], [], []]
    with pytest.raises(NexusFileNotFoundError):
        store.delete_file_metadata("/missing", "k")


def test_metadata_by_path_id(store: SQLAlchemyMetadataStore) -> None:
    path_id = store.put("/m").path_id
    store.set_file_metadata(path_id, "status", "pending")
    store.set_file_metadata(path_id, "owner", {"name": "ü"})
    assert store.get_file_metadata("/m", "status") == "pending"
    assert store.get_file_metadata(path_id, "owner") == {"name": "ü"}
    assert [r["path_id"] for r in store.get_pending_work()] == [path_id]


def test_metadata_is_per_path(store: SQLAlchemyMetadataStore) -> None:
    store.put("/a")
    store.put("/b")
    store.set_file_metadata("/a", "k", "a")
    store.set_file_metadata("/b", "k", "b")
    assert store.get_file_metadata("/a", "k") == "a"
    assert store.get_file_metadata("/b", "k") == "b"


def test_missing_path_raises_file_not_found_and_writes_nothing(
    store: SQLAlchemyMetadataStore, raw_engine: sa.Engine
) -> None:
    store.put("/deleted")
    store.delete("/deleted")
    for path in ("/missing", "/deleted"):
        for key, value in (("status", "ready"), ("note", 1), ("depends_on", "/x")):
            with pytest.raises(NexusFileNotFoundError) as info:
                store.set_file_metadata(path, key, value)
            assert info.value.path == path
            assert isinstance(info.value, FileNotFoundError)
        with pytest.raises(NexusFileNotFoundError):
            store.get_file_metadata(path, "status")
        with pytest.raises(NexusFileNotFoundError):
            store.get_all_file_metadata(path)
    assert not store.exists("/missing")
    with raw_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM file_metadata")).scalar() == 0
    assert _views(store) == [[], [], [], [], []]
    store.put("/missing")
    assert store.get_all_file_metadata("/missing") == {}


INVALID_WRITES: list[tuple[Any, Any]] = [
    ("status", "done"),
    ("status", "READY"),
    ("status", None),
    ("status", 1),
    ("priority", True),
    ("priority", "1"),
    ("priority", 1.5),
    ("priority", 2**63),
    ("tags", "urgent"),
    ("tags", ["ok", 1]),
    ("depends_on", "relative/path"),
    ("depends_on", ["/ok", "/a/../b"]),
    ("depends_on", 7),
    ("started_at", "yesterday"),
    ("started_at", 1700000000),
    ("worker_id", 123),
    ("note", {1, 2}),
    ("note", float("nan")),
    ("", "empty key"),
    ("k\x00", 1),
]


def test_invalid_values_raise_before_writing_anything(
    store: SQLAlchemyMetadataStore, add_item: Callable[..., str], raw_engine: sa.Engine
) -> None:
    target = add_item("/t", "ready", priority=1)
    add_item(
        "/m",
        "blocked",
        priority=5,
        tags=["a"],
        depends_on=target,
        worker_id="w",
        started_at="2026-01-01T00:00:00+00:00",
        note="kept",
    )
    before_meta = store.get_all_file_metadata("/m")
    before_views = _views(store)
    with raw_engine.connect() as conn:
        before_rows = conn.execute(sa.text("SELECT count(*) FROM file_metadata")).scalar()
    for key, value in INVALID_WRITES:
        with pytest.raises(InvalidMetadataError) as info:
            store.set_file_metadata("/m", key, value)
        assert info.value.key == key
        if key in ("", "k\x00"):
            continue  # a bad key: the key is the offending value
        assert info.value.value is value or info.value.value == value
        assert isinstance(info.value, ValueError)
    assert store.get_all_file_metadata("/m") == before_meta
    assert _views(store) == before_views
    with raw_engine.connect() as conn:
        after_rows = conn.execute(sa.text("SELECT count(*) FROM file_metadata")).scalar()
    assert after_rows == before_rows


def test_invalid_path_in_metadata_calls_raises(store: SQLAlchemyMetadataStore) -> None:
    for path in ("relative", "/a/../b", "/a\x00b"):
        with pytest.raises(InvalidPathError):
            store.set_file_metadata(path, "status", "ready")
        with pytest.raises(InvalidPathError):
            store.get_file_metadata(path, "status")
        with pytest.raises(InvalidPathError):
            store.get_all_file_metadata(path)
        with pytest.raises(InvalidPathError):
            store.delete_file_metadata(path, "status")
    assert store.list("/") == []


def test_non_work_keys_do_not_make_a_work_item(store: SQLAlchemyMetadataStore) -> None:
    store.put("/m")
    store.set_file_metadata("/m", "priority", 1)
    store.set_file_metadata("/m", "tags", ["a"])
    store.set_file_metadata("/m", "worker_id", "w")
    assert _views(store) == [[], [], [], [], []]
    store.set_file_metadata("/m", "status", "ready")
    [row] = store.get_work_by_priority()
    assert (row["priority"], row["tags"]) == (1, ["a"])


def test_datetime_started_at_is_stored_as_iso_text(store: SQLAlchemyMetadataStore) -> None:
    store.put("/m")
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    store.set_file_metadata("/m", "started_at", moment)
    stored = store.get_file_metadata("/m", "started_at")
    assert isinstance(stored, str)
    assert datetime.fromisoformat(stored) == moment


def test_string_values_with_nul_are_rejected_up_front(store: SQLAlchemyMetadataStore) -> None:
    # Regression: PostgreSQL jsonb cannot hold U+0000, so the write used to fail late there;
    # now it is refused before anything is written, on both databases.
    store.put("/m")
    for value in ("a\x00b", ["\x00"], {"k": "\x00"}, {"\x00": 1}):
        with pytest.raises(InvalidMetadataError):
            store.set_file_metadata("/m", "note", value)
    assert store.get_all_file_metadata("/m") == {}
