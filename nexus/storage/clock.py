"""UTC moments and their text forms, in plain Python.

Kept apart from :mod:`nexus.storage.types` (the SQLAlchemy column types) so that input
validation, and the command line's ``--help``, need not import SQLAlchemy.
"""

from __future__ import annotations

from datetime import datetime, timezone


def sqlite_timestamp(moment: datetime) -> str:
    """UTC text with milliseconds, exactly as SQLite's ``strftime('%Y-%m-%d %H:%M:%f')``
    writes it, so timestamps from Python, from triggers and from column defaults compare
    correctly as text."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def truncate_to_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_timestamp(value: str) -> datetime:
    """Parse ISO-8601 text (``T`` or space, optional ``Z``/offset); naive means UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return to_utc(parsed)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
