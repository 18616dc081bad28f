"""The work-queue drivers: statement names line up, and PostgreSQL texts are fully rendered."""

from __future__ import annotations

import re

from nexus.storage.calls import pyformat
from nexus.work.drivers import driver_for

#: Statements only one dialect needs (SQLite writes history in a second statement;
#: PostgreSQL locks idempotency keys).
ONLY_SQLITE = {"record_claims", "record_completions"}
ONLY_POSTGRESQL = {"lock_keys"}


def test_both_drivers_name_the_same_statements() -> None:
    sqlite, postgresql = driver_for("sqlite"), driver_for("postgresql")
    assert sqlite.statement_names() - ONLY_SQLITE == postgresql.statement_names() - ONLY_POSTGRESQL


def test_neutral_placeholders_become_pyformat_and_casts_stay() -> None:
    assert pyformat("a = :a::text AND b % 2 = :b_1") == "a = %(a)s::text AND b %% 2 = %(b_1)s"


def test_no_neutral_placeholder_is_left_in_a_postgresql_text() -> None:
    driver = driver_for("postgresql")
    for name in driver.statement_names():
        assert not re.search(r"(?<![:\w]):[A-Za-z_]", driver.sql(name)), name
