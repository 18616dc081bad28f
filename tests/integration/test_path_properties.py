"""Property tests (hypothesis) on SQLite and PostgreSQL: any valid virtual path round-trips
through put/get/list unchanged, list(prefix) returns exactly the paths starting with the
prefix in code-point order on both databases, and invalid paths never write anything."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexus.errors import InvalidPathError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore

# Printable characters of any script; '/' separates segments. Control characters (category Cc)
# and surrogates are excluded: they are never valid in a path.
SEGMENT_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="/"
)
SEGMENT = st.text(SEGMENT_CHARS, min_size=1, max_size=12).filter(lambda s: s != "..")
RELATIVE = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)

PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def namespace() -> str:
    """Each example writes under its own prefix, so examples share the store safely."""
    return f"/{uuid.uuid4().hex}"


@PROPERTY_SETTINGS
@given(relative=RELATIVE)
def test_any_valid_path_round_trips(store: SQLAlchemyMetadataStore, relative: str) -> None:
    path = f"{namespace()}/{relative}"
    record = store.put(path, size=len(path))
    assert record.virtual_path == path
    got = store.get(path)
    assert got is not None and got.virtual_path == path and got.size_bytes == len(path)
    assert store.get_path_id(path) == record.path_id
    assert next(r.virtual_path for r in store.list(path)) == path
    store.set_file_metadata(path, "status", "pending")
    store.set_file_metadata(path, "depends_on", f"{path}-dependency")
    rows = [r for r in store.get_blocked_work() if r["path_id"] == record.path_id]
    assert [r["virtual_path"] for r in rows] == [path]


@PROPERTY_SETTINGS
@given(relatives=st.lists(RELATIVE, min_size=1, max_size=6, unique=True), cut=st.integers(0, 8))
def test_list_prefix_is_string_prefix_in_code_point_order(
    store: SQLAlchemyMetadataStore, relatives: list[str], cut: int
) -> None:
    root = namespace()
    written = [f"{root}/{relative}" for relative in relatives]
    for path in written:
        store.put(path)
    assert [r.virtual_path for r in store.list(root)] == sorted(written)
    # Any prefix of one of the paths (cut anywhere after the namespace) selects exactly the
    # paths that start with it.
    prefix = written[0][: len(root) + 1 + cut]
    expected = sorted(p for p in written if p.startswith(prefix))
    assert [r.virtual_path for r in store.list(prefix)] == expected


BAD_CHARS = st.sampled_from(
    ["\x00", "\x01", "\n", "\r", "\t", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"]
)


@st.composite
def invalid_paths(draw: st.DrawFn) -> str:
    relative = draw(RELATIVE)
    kind = draw(st.sampled_from(["no-slash", "dotdot", "control"]))
    if kind == "no-slash":
        return relative
    segments = relative.split("/")
    if kind == "dotdot":
        segments.insert(draw(st.integers(0, len(segments))), "..")
        return "/" + "/".join(segments)
    text = "/" + relative
    at = draw(st.integers(1, len(text)))
    return text[:at] + draw(BAD_CHARS) + text[at:]


@PROPERTY_SETTINGS
@given(path=invalid_paths())
def test_invalid_paths_never_write_anything(store: SQLAlchemyMetadataStore, path: str) -> None:
    before = [r.path_id for r in store.list("/")]
    try:
        store.put(path)
    except InvalidPathError as error:
        assert error.path == path
    else:
        raise AssertionError(f"{path!r} was accepted")
    assert [r.path_id for r in store.list("/")] == before
