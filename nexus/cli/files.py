"""Paths and their metadata: ``nexus put|get|ls|rm`` and ``nexus meta get|set|rm``."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from nexus.cli.common import (
    CommandGroup,
    db_option,
    decode_cursor,
    emit,
    emit_json,
    encode_cursor,
    json_option,
    open_store,
    page_document,
    parse_json_value,
    pick,
    print_fields,
    print_next_cursor,
    refuse,
    table,
)
from nexus.cli.keys import FILE_KEYS
from nexus.errors import NexusFileNotFoundError

if TYPE_CHECKING:
    from nexus.storage.metadata_store import FileRecord

LIST_COLUMNS = ["virtual_path", "size_bytes", "file_type", "updated_at"]


def _record(record: FileRecord) -> dict[str, Any]:
    return pick(asdict(record), FILE_KEYS)


@click.command()
@db_option
@click.argument("path")
@click.option("--size", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--content-hash", default=None, help="SHA-256 of the content, if any.")
@click.option("--file-type", default=None, help="e.g. application/json")
@json_option
def put(
    db: str | None,
    path: str,
    size: int,
    content_hash: str | None,
    file_type: str | None,
    as_json: bool,
) -> None:
    """Create PATH or update its record (size, content hash, file type); keeps its metadata."""
    with open_store(db, create=True) as store:
        record = _record(store.put(path, size=size, content_hash=content_hash, file_type=file_type))
    emit(record, as_json, f"{record['virtual_path']} {record['path_id']}")


@click.command()
@db_option
@click.argument("path")
@json_option
def get(db: str | None, path: str, as_json: bool) -> None:
    """Print the record of PATH (a virtual path or path_id) and all its metadata."""
    with open_store(db) as store:
        found = store.get(path)
        if found is None:
            raise NexusFileNotFoundError(path)
        metadata = store.get_all_file_metadata(found.path_id)
    record = _record(found)
    if as_json:
        emit_json({**record, "metadata": metadata})
    else:
        print_fields(record["virtual_path"], record, FILE_KEYS, metadata)


@click.command()
@db_option
@click.argument("prefix", default="/")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--after", "after", default=None, metavar="CURSOR", help="next_cursor of a page.")
@json_option
def ls(db: str | None, prefix: str, limit: int, after: str | None, as_json: bool) -> None:
    """List the live paths under PREFIX (a plain string prefix), in byte order."""
    start = decode_cursor(after) if after is not None else None
    with open_store(db) as store:
        records = store.list(prefix)
    if start is not None:
        records = [r for r in records if r.virtual_path.encode() > start.encode()]
    page = [_record(r) for r in records[:limit]]
    next_cursor = encode_cursor(page[-1]["virtual_path"]) if len(records) > limit else None
    if as_json:
        emit_json(page_document(page, next_cursor))
        return
    table(f"paths under {prefix}", LIST_COLUMNS, page)
    print_next_cursor(next_cursor)


@click.command()
@db_option
@click.argument("path")
@json_option
def rm(db: str | None, path: str, as_json: bool) -> None:
    """Delete PATH (soft: it leaves every listing and view; its row stays in the database)."""
    with open_store(db) as store:
        store.delete(path)
    emit({"path": path, "deleted": True}, as_json, f"deleted {path}")


@click.group(cls=CommandGroup)
def meta() -> None:
    """A path's metadata keys: get, set, rm."""


@meta.command("get")
@db_option
@click.argument("path")
@click.argument("key", required=False)
@json_option
def meta_get(db: str | None, path: str, key: str | None, as_json: bool) -> None:
    """Print KEY of PATH (exit 1 if it is unset), or every key without KEY."""
    with open_store(db) as store:
        metadata = store.get_all_file_metadata(path)
    if key is not None:
        if key not in metadata:
            refuse(f"{path} has no metadata key {key!r}", value=key, details={"path": path})
        metadata = {key: metadata[key]}
    if as_json:
        emit_json({"path": path, "metadata": metadata})
    elif key is not None:
        click.echo(emit_value(metadata[key]))
    else:
        rows = [{"key": k, "value": v} for k, v in metadata.items()]
        table(f"metadata of {path}", ["key", "value"], rows)


def emit_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@meta.command("set")
@db_option
@click.argument("path")
@click.argument("key")
@click.argument("value")
@click.option("--string", "as_string", is_flag=True, help="Store VALUE as a string, not JSON.")
@json_option
def meta_set(
    db: str | None, path: str, key: str, value: str, as_string: bool, as_json: bool
) -> None:
    """Set KEY of PATH to VALUE, read as JSON (42, true, ["a"], {"k": 1}); text that is not
    JSON is stored as a string."""
    parsed = value if as_string else parse_json_value(value)
    with open_store(db) as store:
        store.set_file_metadata(path, key, parsed)
    emit({"path": path, "key": key, "value": parsed}, as_json, f"{path} {key}={emit_value(parsed)}")


@meta.command("rm")
@db_option
@click.argument("path")
@click.argument("key")
@json_option
def meta_rm(db: str | None, path: str, key: str, as_json: bool) -> None:
    """Remove KEY from PATH (exit 1 if it was not set). Removing status ends the work item."""
    with open_store(db) as store:
        removed = store.delete_file_metadata(path, key)
    if not removed:
        refuse(f"{path} has no metadata key {key!r}", value=key, details={"path": path})
    emit({"path": path, "key": key, "removed": removed}, as_json, f"removed {path} {key}")
