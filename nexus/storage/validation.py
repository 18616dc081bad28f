"""Validation of paths and metadata, applied before anything is written."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from nexus.errors import InvalidArgumentError, InvalidMetadataError, InvalidPathError
from nexus.storage.clock import parse_timestamp, to_utc, truncate_to_ms

STATUSES = ("ready", "pending", "blocked", "in_progress", "completed", "failed")
MAX_PATH_LENGTH = 4096
MAX_KEY_LENGTH = 255
_PATH_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# C0 controls, DEL and the C1 controls (Unicode category Cc).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


#: LIMITs above this are the same as no limit (no table holds more rows), and both databases
#: bind it as a 32-bit integer.
MAX_LIMIT = 2**31 - 1


def is_text(value: str) -> bool:
    """Whether ``value`` is text a database can store: UTF-8 encodable (no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_path_id(value: str) -> bool:
    return bool(_PATH_ID.match(value))


def validate_path(path: Any) -> str:
    """A virtual path: starts with ``/``, no ``..`` segment, no NUL or control character."""
    if not isinstance(path, str):
        raise InvalidPathError(path, "must be a string")
    if not path.startswith("/"):
        raise InvalidPathError(path, "must start with '/'")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidPathError(path, f"longer than {MAX_PATH_LENGTH} characters")
    if _CONTROL.search(path):
        raise InvalidPathError(path, "contains a NUL or control character")
    if not is_text(path):
        raise InvalidPathError(path, "is not valid Unicode text (a lone surrogate)")
    if ".." in path.split("/"):
        raise InvalidPathError(path, "contains a '..' segment")
    return path


def validate_path_or_id(value: Any) -> str:
    """A virtual path or a path_id (uuid string)."""
    if isinstance(value, str) and is_path_id(value):
        return value
    return validate_path(value)


def validate_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise InvalidPathError(prefix, "a prefix must be a string starting with '/'")
    return validate_path(prefix)


def validate_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgumentError("limit", limit, "must be None or a non-negative int")
    return min(limit, MAX_LIMIT)


def validate_text(name: str, value: Any, *, max_length: int | None = None) -> str:
    """A non-empty string a database can store (for worker ids, tokens, keys)."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(name, value, "must be a non-empty string")
    if "\x00" in value or not is_text(value):
        raise InvalidArgumentError(name, value, "contains a NUL character or a lone surrogate")
    if max_length is not None and len(value) > max_length:
        raise InvalidArgumentError(name, value, f"must be at most {max_length} characters")
    return value


def validate_optional_text(name: str, value: Any) -> str | None:
    """None or a string a database can store (content hashes, file types)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError(name, value, "must be a string or None")
    if "\x00" in value or not is_text(value):
        raise InvalidArgumentError(name, value, "contains a NUL character or a lone surrogate")
    return value


def validate_batch(name: str, value: Any) -> list[Any]:
    """The items of a ``*_many`` call: any iterable but a string, bytes or a mapping."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise InvalidArgumentError(name, value, "must be a list (or another iterable)")
    return list(value)


def validate_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite, positive (or non-negative) number of seconds."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        bound = "non-negative" if allow_zero else "positive"
        raise InvalidArgumentError(name, value, f"must be a {bound} number of seconds")
    return float(value)


def validate_positive_int(name: str, value: Any, *, allow_zero: bool = False) -> int:
    """A positive (or non-negative) int that fits a 64-bit column on both databases."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (0 if allow_zero else 1) <= value < 2**63
    ):
        bound = "non-negative" if allow_zero else "positive"
        raise InvalidArgumentError(name, value, f"must be a {bound} 64-bit int")
    return value


def validate_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidMetadataError(key, None, "key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH or _CONTROL.search(key):
        raise InvalidMetadataError(key, None, "key is too long or contains control characters")
    if not is_text(key):
        raise InvalidMetadataError(key, None, "key is not valid Unicode text (a lone surrogate)")
    return key


def validate_status(value: Any) -> str:
    if value not in STATUSES or not isinstance(value, str):
        raise InvalidMetadataError("status", value, f"must be one of {', '.join(STATUSES)}")
    return value


def validate_priority(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMetadataError("priority", value, "must be an int or None")
    if not -(2**63) <= value < 2**63:
        raise InvalidMetadataError("priority", value, "must fit in 64 bits")
    return value


def validate_tags(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise InvalidMetadataError("tags", value, "must be a list of strings")
    if _has_bad_text(list(value)):
        raise InvalidMetadataError("tags", value, "contains a NUL character or a lone surrogate")
    return list(value)


def validate_depends_on(value: Any) -> str | list[str] | None:
    if value is None:
        return None
    refs: Iterable[Any] = [value] if isinstance(value, str) else value
    if not isinstance(value, (str, list, tuple)):
        raise InvalidMetadataError("depends_on", value, "must be a path, a path_id or a list")
    checked = []
    for ref in refs:
        try:
            checked.append(validate_path_or_id(ref))
        except InvalidPathError as exc:
            raise InvalidMetadataError("depends_on", value, exc.reason) from exc
    return value if isinstance(value, str) else checked


def dependency_refs(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(dict.fromkeys(value))


def canonical_timestamp(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds: the form both databases' projections read."""
    return truncate_to_ms(to_utc(moment)).isoformat(timespec="milliseconds")


def validate_timestamp(key: str, value: Any) -> str | None:
    """A datetime or ISO-8601 text, stored canonically (UTC, milliseconds); naive means UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        try:
            return canonical_timestamp(value)
        except OverflowError as exc:
            raise InvalidMetadataError(key, value, "is out of range in UTC") from exc
    if isinstance(value, str):
        try:
            return canonical_timestamp(parse_timestamp(value))
        except (ValueError, OverflowError) as exc:
            raise InvalidMetadataError(key, value, "must be an ISO-8601 timestamp") from exc
    raise InvalidMetadataError(key, value, "must be an ISO-8601 string or a datetime")


def validate_optional_str(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidMetadataError(key, value, "must be a string or None")
    return value


def _check_json(key: str, value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidMetadataError(key, value, "is not JSON-serialisable") from exc
    return value


def _has_bad_text(value: Any) -> bool:
    """A NUL (PostgreSQL's jsonb cannot hold U+0000) or a lone surrogate anywhere inside."""
    if isinstance(value, str):
        return "\x00" in value or not is_text(value)
    if isinstance(value, dict):
        return any(_has_bad_text(k) or _has_bad_text(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_bad_text(item) for item in value)
    return False


def validate_metadata(key: Any, value: Any) -> Any:
    """Check a key/value pair; returns the value to store (datetimes become ISO text)."""
    key = validate_key(key)
    if _has_bad_text(value):
        # Refused on both databases alike (jsonb cannot hold U+0000; no driver can encode a
        # lone surrogate).
        raise InvalidMetadataError(key, value, "contains a NUL character or a lone surrogate")
    if key == "status":
        return validate_status(value)
    if key == "priority":
        return validate_priority(value)
    if key == "tags":
        return validate_tags(value)
    if key == "depends_on":
        return validate_depends_on(value)
    if key == "started_at":
        return validate_timestamp(key, value)
    if key == "worker_id":
        return validate_optional_str(key, value)
    return _check_json(key, value)
