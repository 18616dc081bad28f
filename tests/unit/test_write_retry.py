"""The store retries a write transaction that PostgreSQL aborted with a deadlock or a
serialisation failure, and wraps every other driver error in NexusDatabaseError at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from nexus import NexusDatabaseError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore


class FakeDriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _failing(times: int, sqlstate: str) -> tuple[list[int], object]:
    calls: list[int] = []

    def work(conn: sa.Connection) -> str:
        calls.append(1)
        if len(calls) <= times:
            raise sa.exc.OperationalError("UPDATE ...", {}, FakeDriverError(sqlstate))
        return "done"

    return calls, work


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_deadlocks_and_serialisation_failures_are_retried(tmp_path: Path, sqlstate: str) -> None:
    with SQLAlchemyMetadataStore(tmp_path / "m.db") as store:
        calls, work = _failing(2, sqlstate)
        assert store._write(work) == "done"  # type: ignore[arg-type]
        assert len(calls) == 3


def test_retries_are_bounded(tmp_path: Path) -> None:
    with SQLAlchemyMetadataStore(tmp_path / "m.db") as store:
        calls, work = _failing(100, "40P01")
        with pytest.raises(NexusDatabaseError) as info:
            store._write(work)  # type: ignore[arg-type]
        assert len(calls) == 5
        assert isinstance(info.value.__cause__, sa.exc.OperationalError)


def test_other_driver_errors_are_wrapped_at_once(tmp_path: Path) -> None:
    with SQLAlchemyMetadataStore(tmp_path / "m.db") as store:
        calls, work = _failing(1, "23505")
        with pytest.raises(NexusDatabaseError):
            store._write(work)  # type: ignore[arg-type]
        assert len(calls) == 1
