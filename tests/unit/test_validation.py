"""Input validation, without a database: which paths, work-metadata values and limits are
accepted, and that every rejection is a typed nexus error naming the offending value.

These call the validators the store applies before any write (``nexus.storage.validation``);
the integration tests check the store raises the same errors and writes nothing.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from nexus.errors import (
    InvalidArgumentError,
    InvalidMetadataError,
    InvalidPathError,
    NexusError,
)
from nexus.storage.types import parse_timestamp
from nexus.storage.validation import (
    STATUSES,
    validate_limit,
    validate_metadata,
    validate_path,
    validate_path_or_id,
)

PATH_ID = str(uuid.uuid4())

# ---------------------------------------------------------------------------------- paths

VALID_PATHS = [
    "/",
    "/a",
    "/jobs/process-data.json",
    "/a/b/c/d.txt",
    "/a..b",
    "/...",
    "/a/.../b",
    "/with space/and-dash_underscore",
    "/ünïcödé/日本語/😀.json",
    "/a//b",
    "/trailing/",
]

INVALID_PATHS = [
    "",
    "a",
    "jobs/a.json",
    "./a",
    "../a",
    "/..",
    "/a/..",
    "/a/../b",
    "/../etc/passwd",
    "/a\x00b",
    "/a\nb",
    "/a\rb",
    "/a\tb",
    "/a\x1bb",
    "/a\x1fb",
    "/a\x7fb",
    "\x00",
]


@pytest.mark.parametrize("path", VALID_PATHS)
def test_valid_paths_are_accepted_unchanged(path: str) -> None:
    assert validate_path(path) == path
    assert validate_path_or_id(path) == path


@pytest.mark.parametrize("path", INVALID_PATHS)
def test_invalid_paths_raise_invalid_path_error_naming_the_path(path: str) -> None:
    with pytest.raises(InvalidPathError) as info:
        validate_path(path)
    assert info.value.path == path
    assert repr(path) in str(info.value)
    assert isinstance(info.value, NexusError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("path", [None, 1, b"/a", ["/a"], {"/a": 1}])
def test_non_string_paths_are_rejected(path: object) -> None:
    with pytest.raises(InvalidPathError) as info:
        validate_path(path)
    assert info.value.path == path


@pytest.mark.parametrize("char", ["\x80", "\x85", "\x9b", "\x9f"])
def test_c1_control_characters_are_rejected_in_paths(char: str) -> None:
    # Regression: the C1 controls U+0080..U+009F (Unicode category Cc) used to be accepted.
    with pytest.raises(InvalidPathError):
        validate_path(f"/a{char}b")
    assert validate_path("/a\xa0b") == "/a\xa0b"  # U+00A0 (no-break space) is printable


def test_path_id_is_accepted_where_a_path_or_id_is() -> None:
    assert validate_path_or_id(PATH_ID) == PATH_ID
    # A path_id is not a virtual path.
    with pytest.raises(InvalidPathError):
        validate_path(PATH_ID)


# ---------------------------------------------------------------------------------- status


@pytest.mark.parametrize("status", STATUSES)
def test_each_of_the_six_statuses_is_accepted(status: str) -> None:
    assert validate_metadata("status", status) == status


def test_there_are_exactly_six_statuses() -> None:
    assert set(STATUSES) == {"ready", "pending", "blocked", "in_progress", "completed", "failed"}


@pytest.mark.parametrize(
    "value",
    [
        "READY",
        "Ready",
        "done",
        "",
        " ready",
        "in-progress",
        None,
        1,
        True,
        ["ready"],
        {"status": "ready"},
    ],
)
def test_other_statuses_are_rejected(value: object) -> None:
    with pytest.raises(InvalidMetadataError) as info:
        validate_metadata("status", value)
    assert info.value.key == "status"
    assert info.value.value == value
    assert repr(value) in str(info.value)


# ---------------------------------------------------------------------------------- priority


@pytest.mark.parametrize("value", [0, 1, 2, -5, 10**9, 2**63 - 1, -(2**63), None])
def test_int_or_none_priorities_are_accepted(value: int | None) -> None:
    assert validate_metadata("priority", value) == value


@pytest.mark.parametrize("value", [True, False, "1", "high", 1.0, 1.5, [1], {"p": 1}, 2**63])
def test_non_int_priorities_are_rejected(value: object) -> None:
    with pytest.raises(InvalidMetadataError) as info:
        validate_metadata("priority", value)
    assert info.value.key == "priority"
    assert info.value.value == value


# ---------------------------------------------------------------------------------- tags


@pytest.mark.parametrize("value", [[], ["urgent"], ["urgent", "data"], ["", "ü"], None])
def test_lists_of_strings_are_valid_tags(value: list[str] | None) -> None:
    assert validate_metadata("tags", value) == value


@pytest.mark.parametrize("value", ["urgent", ["a", 1], [None], [["a"]], {"a": 1}, {"a"}, 3, [True]])
def test_other_tags_are_rejected(value: object) -> None:
    with pytest.raises(InvalidMetadataError) as info:
        validate_metadata("tags", value)
    assert info.value.key == "tags"
    assert info.value.value == value


# ---------------------------------------------------------------------------------- depends_on


@pytest.mark.parametrize(
    "value",
    ["/jobs/a.json", PATH_ID, ["/jobs/a.json"], [PATH_ID, "/jobs/b.json"], [], None],
)
def test_depends_on_accepts_a_path_a_path_id_or_a_list_of_them(value: object) -> None:
    stored = validate_metadata("depends_on", value)
    assert stored == value
    json.dumps(stored)


@pytest.mark.parametrize(
    "value",
    [
        "jobs/a.json",
        "/a/../b",
        "/a\x00",
        1,
        True,
        [1],
        ["/a", None],
        [["/a"]],
        {"/a"},
        {"path": "/a"},
        PATH_ID.upper(),
    ],
)
def test_depends_on_rejects_anything_else(value: object) -> None:
    with pytest.raises(InvalidMetadataError) as info:
        validate_metadata("depends_on", value)
    assert info.value.key == "depends_on"
    assert info.value.value == value


# ---------------------------------------------------------------------------------- started_at


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01T12:00:00",
        "2026-01-01T12:00:00.123456",
        "2026-01-01T12:00:00+00:00",
        "2026-01-01T12:00:00Z",
        "2026-01-01 12:00:00",
        "2026-01-01T14:00:00+02:00",
    ],
)
def test_iso_strings_are_valid_started_at(value: str) -> None:
    stored = validate_metadata("started_at", value)
    assert isinstance(stored, str)
    # The stored text names the same instant (at least to the millisecond), in UTC.
    instant = parse_timestamp(stored)
    assert abs(instant - parse_timestamp(value)) < timedelta(milliseconds=1)
    assert instant.utcoffset() == timedelta(0)


def test_datetimes_are_valid_started_at_and_stored_as_utc_iso_text() -> None:
    aware = datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    stored = validate_metadata("started_at", aware)
    assert isinstance(stored, str)
    assert datetime.fromisoformat(stored) == aware
    assert datetime.fromisoformat(stored).utcoffset() == timedelta(0)
    naive = datetime(2026, 1, 1, 12, 0)
    assert datetime.fromisoformat(validate_metadata("started_at", naive)) == naive.replace(
        tzinfo=timezone.utc
    )


@pytest.mark.parametrize(
    "value", ["yesterday", "", "2026-13-01", "12:00", 1700000000, 1.5, [], {"at": "2026-01-01"}]
)
def test_other_started_at_values_are_rejected(value: object) -> None:
    with pytest.raises(InvalidMetadataError) as info:
        validate_metadata("started_at", value)
    assert info.value.key == "started_at"
    assert info.value.value == value


# ---------------------------------------------------------------------------------- other keys


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -1,
        2**70,
        1.5,
        "",
        "ü",
        [],
        {},
        [1, "a", None],
        {"a": {"b": [1, {"c": None}]}},
    ],
)
def test_any_json_value_is_accepted_for_other_keys(value: object) -> None:
    assert validate_metadata("anything", value) == value


@pytest.mark.parametrize("value", [{1, 2}, object(), float("nan"), float("inf"), b"bytes"])
def test_non_json_values_are_rejected(value: object) -> None:
    with pytest.raises(InvalidMetadataError) as info:
        validate_metadata("anything", value)
    assert info.value.value is value


@pytest.mark.parametrize("key", ["", None, 1, "a\x00b", "k" * 256])
def test_bad_keys_are_rejected(key: object) -> None:
    with pytest.raises(InvalidMetadataError) as info:
        validate_metadata(key, 1)
    assert info.value.key == key


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
# Regression: the UTC conversion used to raise a raw OverflowError.
def test_started_at_out_of_range_in_utc_is_an_invalid_metadata_error(value: str) -> None:
    with pytest.raises(InvalidMetadataError) as info:
        validate_metadata("started_at", value)
    assert info.value.value == value


def test_worker_id_must_be_a_string() -> None:
    assert validate_metadata("worker_id", "worker-123") == "worker-123"
    with pytest.raises(InvalidMetadataError):
        validate_metadata("worker_id", 123)


# ---------------------------------------------------------------------------------- limit


@pytest.mark.parametrize("value", [None, 0, 1, 10, 10**6])
def test_none_or_non_negative_ints_are_valid_limits(value: int | None) -> None:
    assert validate_limit(value) == value


@pytest.mark.parametrize("value", [-1, -100, True, False, "10", 1.0, 2.5, [10]])
def test_other_limits_are_rejected(value: object) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_limit(value)
    assert info.value.name == "limit"
    assert info.value.value == value
    assert isinstance(info.value, ValueError)


# ---- text no database can store (a lone surrogate), and values out of the drivers' range


def test_lone_surrogates_are_refused_with_typed_errors() -> None:
    from nexus.errors import InvalidArgumentError, InvalidMetadataError, InvalidPathError
    from nexus.storage.validation import validate_metadata, validate_text

    with pytest.raises(InvalidPathError):
        validate_path("/a\ud800")
    with pytest.raises(InvalidMetadataError):
        validate_metadata("k\ud800", 1)
    with pytest.raises(InvalidMetadataError):
        validate_metadata("k", {"nested": ["\udfff"]})
    with pytest.raises(InvalidMetadataError):
        validate_metadata("tags", ["ok", "\ud800"])
    with pytest.raises(InvalidArgumentError):
        validate_text("worker_id", "w\ud800")


def test_limits_beyond_32_bits_mean_no_limit() -> None:
    from nexus.storage.validation import MAX_LIMIT, validate_limit

    assert validate_limit(2**63) == MAX_LIMIT
    assert validate_limit(5) == 5
