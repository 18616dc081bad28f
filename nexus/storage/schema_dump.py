"""The schema at head, per dialect, as one SQL file each: ``schema/sqlite.sql`` and
``schema/postgresql.sql``.

Nine revisions build the schema, each on top of the last; this module migrates a scratch
database of each dialect to head and writes down what is there, so a reader sees every table,
index, view, trigger, function and policy in one place. The files are descriptions, not
scripts: objects are grouped by kind and sorted by name (indexes and triggers by their table,
then name), so that a new revision shows up as a small diff.

Regenerate both after adding a revision (PostgreSQL needs a server; a throwaway database is
created on it and dropped)::

    NEXUS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1/postgres \\
        python -m nexus.storage.schema_dump --write

Without ``--write`` the command compares and prints a unified diff (exit status 1 on drift);
``tests/migration/test_schema_snapshot.py`` does the same comparison in the test suite.

Where the files live: a top-level ``schema/`` directory beside ``migrations/``, because they
describe what ``migrations/`` builds and belong to the checkout, not to the wheel (nothing
reads them at run time) nor among the prose of ``docs/``.

How each dialect is read:

* SQLite: ``sqlite_master`` (type, name, the ``CREATE`` text as the revision wrote it or
  SQLAlchemy compiled it), without SQLite's internal objects and automatic indexes; only
  trailing spaces are cut. The file does not name the SQLite version: SQLite keeps the text
  it was given, so the version does not change it (a new SQLAlchemy could compile the
  tables of ``op.create_table`` differently; the test would show it as a diff).
* PostgreSQL: the catalogs, always (never ``pg_dump``), so the output depends only on the
  server's major version and not on which client binary a machine has: pg_dump's text changes
  between its own minor releases (15.14 added random ``\\restrict`` lines), which would make
  the comparison fail on a machine that did nothing wrong. Tables are rebuilt from
  ``pg_attribute`` and ``pg_get_constraintdef``; indexes, views, functions and triggers come
  from ``pg_get_indexdef``, ``pg_get_viewdef``, ``pg_get_functiondef`` and
  ``pg_get_triggerdef``; then row-level security, policies and the grants to other roles than
  the owner (owner names differ per installation and are left out). The file names the
  server's major version: revision 0007 creates different objects before PostgreSQL 15, and
  the ``pg_get_*`` functions print differently across major versions.

Objects of a kind this module does not know how to print (types, extensions, aggregates,
rules, comments, other schemas) raise :class:`UnsupportedSchemaObject`, so a revision that adds
one extends this module instead of silently going missing from the file.

This is a storage-layer tool: it imports nothing from ``nexus.work``, ``nexus.cli`` or
``nexus.web``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from nexus.storage import migrate
from nexus.storage.engine import create_engine, display_url, resolve_database_url

DIALECTS = ("sqlite", "postgresql")
POSTGRES_URL_ENV = "NEXUS_TEST_POSTGRES_URL"
REGENERATE_COMMAND = "python -m nexus.storage.schema_dump --write"
#: The checkout's ``schema/`` directory (two levels above this file: nexus/storage/). An
#: installed wheel has no such directory beside it: pass ``--dir`` there.
DEFAULT_DIRECTORY = Path(__file__).resolve().parents[2] / "schema"


class UnsupportedSchemaObject(RuntimeError):
    """The database holds an object this module cannot describe yet."""


def snapshot_path(dialect: str, directory: Path | None = None) -> Path:
    return (DEFAULT_DIRECTORY if directory is None else directory) / f"{dialect}.sql"


# --- the dumps -------------------------------------------------------------------------------


def dump(dialect: str, postgres_url: str | None = None) -> str:
    """The schema at head of ``dialect``, built in a scratch database that is removed after.

    ``postgres_url`` names a PostgreSQL server (any database on it): a throwaway database is
    created there and dropped again.
    """
    if dialect == "sqlite":
        return dump_sqlite()
    if dialect == "postgresql":
        if not postgres_url:
            raise ValueError(f"the PostgreSQL dump needs a server URL (set {POSTGRES_URL_ENV})")
        return dump_postgresql(postgres_url)
    raise ValueError(f"unknown dialect {dialect!r}: one of {', '.join(DIALECTS)}")


def dump_sqlite() -> str:
    with tempfile.TemporaryDirectory(prefix="nexus-schema-") as directory:
        return dump_database(resolve_database_url(Path(directory) / "schema.db"))


def dump_postgresql(server_url: str) -> str:
    url = sa.engine.make_url(resolve_database_url(server_url))
    name = f"nexus_schema_dump_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            return dump_database(url.set(database=name).render_as_string(hide_password=False))
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def dump_database(url: str) -> str:
    """Migrate the (empty) database at ``url`` to head and describe it."""
    engine = create_engine(url)
    try:
        migrate.upgrade(engine)
        return describe(engine)
    finally:
        engine.dispose()


def describe(engine: sa.Engine) -> str:
    """The schema of an already migrated database, as the text of its snapshot file."""
    with engine.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        if engine.dialect.name == "sqlite":
            origin = "sqlite_master (the CREATE texts as SQLite keeps them)"
            sections = _sqlite_sections(conn)
        elif engine.dialect.name == "postgresql":
            major = int(conn.exec_driver_sql("SHOW server_version_num").scalar() or 0) // 10000
            origin = (
                f"PostgreSQL {major} (the catalogs; another major version may print differently)"
            )
            sections = _postgresql_sections(conn)
        else:  # pragma: no cover - nexus opens nothing else
            raise ValueError(f"unsupported dialect {engine.dialect.name!r}")
    header = [
        f"-- The nexus schema on {_TITLES[engine.dialect.name]} at revision {revision}"
        " (head): every object the",
        "-- Alembic revisions in migrations/versions create, grouped by kind, sorted by name.",
        f"-- Generated from {origin}.",
        f"-- Do not edit: regenerate with `{REGENERATE_COMMAND}`",
        f"-- (PostgreSQL from the server in {POSTGRES_URL_ENV}); a test compares this file.",
    ]
    parts = ["\n".join(header)]
    for title, statements in sections:
        if statements:
            parts.append(f"-- {title}\n\n" + "\n\n".join(statements))
    return "\n\n\n".join(parts) + "\n"


_TITLES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _statement(sql: str) -> str:
    """``sql`` as the database keeps it, with trailing spaces and blank ends cut, ending in
    a semicolon."""
    text = "\n".join(line.rstrip() for line in sql.strip().splitlines())
    return text if text.endswith(";") else text + ";"


Sections = list[tuple[str, list[str]]]


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite_sections(conn: sa.Connection) -> Sections:
    rows = conn.exec_driver_sql(
        "SELECT type, tbl_name, name, sql FROM sqlite_master"
        " WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).all()
    by_kind: dict[str, list[tuple[str, str, str]]] = {}
    for kind, table, name, sql in rows:
        by_kind.setdefault(kind, []).append((table, name, sql))
    unknown = set(by_kind) - {"table", "view", "index", "trigger"}
    if unknown:  # pragma: no cover - sqlite_master holds only these four
        raise UnsupportedSchemaObject(f"sqlite_master objects of type {sorted(unknown)}")
    return [
        (title, [_statement(sql) for _, _, sql in sorted(by_kind.get(kind, []))])
        for kind, title in (
            ("table", "Tables"),
            ("view", "Views"),
            ("index", "Indexes (by table)"),
            ("trigger", "Triggers (by table or view)"),
        )
    ]


# --- PostgreSQL ------------------------------------------------------------------------------

# Everything below reads the schemas a revision could have created objects in; nexus creates
# them in ``public`` only (the guard below says so if that changes).
# (No ``%`` in these texts: they run without parameters, and psycopg reads ``%`` as one.)
_USER_SCHEMA = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
# Not part of an extension (those objects are the extension's, not the revisions').
_NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = {oid} AND e.deptype = 'e')"


def _postgresql_sections(conn: sa.Connection) -> Sections:
    # Names print unqualified when their schema is on the search path; pin it, so that the
    # output does not depend on the server's or the role's settings.
    conn.exec_driver_sql("SET search_path = public")
    _refuse_unsupported(conn)
    sections: Sections = [
        ("Tables", _pg_tables(conn)),
        ("Sequences", _pg_sequences(conn)),
        ("Views", _pg_views(conn)),
        ("Indexes (by table)", _pg_indexes(conn)),
        ("Functions", _pg_functions(conn)),
        ("Triggers (by table or view)", _pg_triggers(conn)),
        ("Row-level security", _pg_row_security(conn)),
        ("Grants (to roles other than the owner)", _pg_grants(conn)),
    ]
    return sections


def _rows(conn: sa.Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.exec_driver_sql(sql)]


def _refuse_unsupported(conn: sa.Connection) -> None:
    checks = {
        "schemas other than public": f"SELECT n.nspname FROM pg_namespace n WHERE {_USER_SCHEMA}"
        " AND n.nspname <> 'public'",
        "extensions": "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'",
        "types": "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        f" WHERE {_USER_SCHEMA} AND (t.typtype IN ('e', 'd', 'r', 'm') OR (t.typtype = 'c'"
        " AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))",
        "relations of another kind (foreign tables, materialized views...)": "SELECT c.relname"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_USER_SCHEMA} AND c.relkind NOT IN ('r', 'p', 'v', 'i', 'I', 'S', 't', 'c')",
        "aggregates": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n"
        f" ON n.oid = p.pronamespace WHERE {_USER_SCHEMA} AND p.prokind = 'a'",
        "rules": "SELECT r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class"
        f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_SCHEMA}"
        " AND r.rulename <> '_RETURN'",
        "comments": "SELECT d.objoid::text FROM pg_description d"
        " JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass"
        f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_SCHEMA}"
        " UNION ALL SELECT d.objoid::text FROM pg_description d"
        " JOIN pg_proc p ON p.oid = d.objoid AND d.classoid = 'pg_proc'::regclass"
        f" JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_SCHEMA}",
        "event triggers": "SELECT evtname FROM pg_event_trigger",
    }
    found = {kind: [str(row[0]) for row in _rows(conn, sql)] for kind, sql in checks.items()}
    found = {kind: names for kind, names in found.items() if names}
    if found:
        listed = "; ".join(f"{kind}: {', '.join(sorted(names))}" for kind, names in found.items())
        raise UnsupportedSchemaObject(
            f"nexus.storage.schema_dump cannot describe these yet ({listed});"
            " teach it before regenerating the schema files"
        )


def _pg_tables(conn: sa.Connection) -> list[str]:
    tables = _rows(
        conn,
        "SELECT c.oid, c.oid::regclass::text, c.relkind, c.relpersistence, c.reloptions,"
        " pg_get_partkeydef(c.oid)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'p')"
        f" AND {_NOT_EXTENSION.format(oid='c.oid')} ORDER BY 2",
    )
    out = []
    for oid, name, _kind, persistence, options, partition_key in tables:
        lines = [_pg_column(row) for row in _pg_columns(conn, oid)]
        lines += [
            f"CONSTRAINT {constraint} {definition}"
            for constraint, definition in _rows(
                conn,
                "SELECT quote_ident(conname), pg_get_constraintdef(oid, true)"
                f" FROM pg_constraint WHERE conrelid = {int(oid)} AND contype <> 'n'"
                " ORDER BY CASE contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'f' THEN 2"
                " WHEN 'c' THEN 3 ELSE 4 END, conname",
            )
        ]
        unlogged = "UNLOGGED " if persistence == "u" else ""
        body = ",\n".join(f"    {line}" for line in lines)
        tail = f" PARTITION BY {partition_key}" if partition_key else ""
        tail += f" WITH ({', '.join(options)})" if options else ""
        out.append(f"CREATE {unlogged}TABLE {name} (\n{body}\n){tail};")
    return out


def _pg_columns(conn: sa.Connection, oid: int) -> list[tuple[Any, ...]]:
    return _rows(
        conn,
        "SELECT quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid, true), a.attidentity, a.attgenerated,"
        " CASE WHEN a.attcollation <> t.typcollation"
        " THEN (SELECT quote_ident(collname) FROM pg_collation WHERE oid = a.attcollation) END"
        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        f" WHERE a.attrelid = {int(oid)} AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum",
    )


def _pg_column(row: tuple[Any, ...]) -> str:
    name, type_, not_null, default, identity, generated, collation = row
    text = f"{name} {type_}"
    if collation:
        text += f" COLLATE {collation}"
    if generated == "s":
        text += f" GENERATED ALWAYS AS ({default}) STORED"
    elif default is not None:
        text += f" DEFAULT {default}"
    if identity:
        text += f" GENERATED {'ALWAYS' if identity == 'a' else 'BY DEFAULT'} AS IDENTITY"
    if not_null:
        text += " NOT NULL"
    return text


def _pg_sequences(conn: sa.Connection) -> list[str]:
    """Sequences other than the ones behind identity columns (those print with their column)."""
    rows = _rows(
        conn,
        "SELECT c.oid::regclass::text, format_type(s.seqtypid, NULL), s.seqstart,"
        " s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,"
        " (SELECT d.refobjid::regclass::text || '.' || quote_ident(a.attname)"
        "  FROM pg_depend d JOIN pg_attribute a"
        "  ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
        "  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'a'"
        "  AND d.refobjsubid > 0)"
        " FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_USER_SCHEMA} AND {_NOT_EXTENSION.format(oid='c.oid')}"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.objid = c.oid AND i.deptype = 'i')"
        " ORDER BY 1",
    )
    out = []
    for name, type_, start, increment, low, high, cache, cycle, owned_by in rows:
        text = (
            f"CREATE SEQUENCE {name} AS {type_}\n    START WITH {start} INCREMENT BY {increment}"
            f" MINVALUE {low} MAXVALUE {high} CACHE {cache}{' CYCLE' if cycle else ''}"
        )
        if owned_by:
            text += f"\n    OWNED BY {owned_by}"
        out.append(text + ";")
    return out


def _pg_views(conn: sa.Connection) -> list[str]:
    rows = _rows(
        conn,
        "SELECT c.oid::regclass::text, c.reloptions, pg_get_viewdef(c.oid, true)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_USER_SCHEMA} AND c.relkind = 'v' AND {_NOT_EXTENSION.format(oid='c.oid')}"
        " ORDER BY 1",
    )
    out = []
    for name, options, definition in rows:
        with_ = f" WITH ({', '.join(options)})" if options else ""
        out.append(_statement(f"CREATE VIEW {name}{with_} AS\n{definition}"))
    return out


def _pg_indexes(conn: sa.Connection) -> list[str]:
    """Indexes other than the ones behind a primary key, unique or exclusion constraint
    (those print as the table's constraints)."""
    rows = _rows(
        conn,
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class x ON x.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = x.relnamespace"
        f" WHERE {_USER_SCHEMA} AND {_NOT_EXTENSION.format(oid='t.oid')}"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid"
        "  AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))"
        " ORDER BY t.relname, x.relname",
    )
    return [_statement(definition) for (definition,) in rows]


def _pg_functions(conn: sa.Connection) -> list[str]:
    rows = _rows(
        conn,
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace"
        f" WHERE {_USER_SCHEMA} AND p.prokind <> 'a' AND {_NOT_EXTENSION.format(oid='p.oid')}"
        " ORDER BY p.proname, pg_get_function_identity_arguments(p.oid)",
    )
    return [_statement(definition) for (definition,) in rows]


_TRIGGER_STATES = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}


def _pg_triggers(conn: sa.Connection) -> list[str]:
    rows = _rows(
        conn,
        "SELECT pg_get_triggerdef(t.oid, true), t.tgenabled, c.oid::regclass::text,"
        " quote_ident(t.tgname) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_USER_SCHEMA} AND NOT t.tgisinternal ORDER BY c.relname, t.tgname",
    )
    out = []
    for definition, state, table, name in rows:
        text = _statement(definition)
        if state in _TRIGGER_STATES:
            text += f"\nALTER TABLE {table} {_TRIGGER_STATES[state]} TRIGGER {name};"
        out.append(text)
    return out


_POLICY_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}


def _pg_row_security(conn: sa.Connection) -> list[str]:
    """``ENABLE``/``FORCE ROW LEVEL SECURITY`` per table, then every policy."""
    out = []
    for name, enabled, forced in _rows(
        conn,
        "SELECT c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_USER_SCHEMA} AND (c.relrowsecurity OR c.relforcerowsecurity) ORDER BY 1",
    ):
        if enabled:
            out.append(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;")
        if forced:
            out.append(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY;")
    for name, table, permissive, command, roles, using, check in _rows(
        conn,
        "SELECT quote_ident(p.polname), c.oid::regclass::text, p.polpermissive, p.polcmd,"
        " CASE WHEN p.polroles = '{0}' THEN NULL ELSE (SELECT string_agg(CASE r.oid WHEN 0"
        "  THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, ', ' ORDER BY r.rolname)"
        "  FROM pg_roles r WHERE r.oid = ANY (p.polroles)) END,"
        " pg_get_expr(p.polqual, p.polrelid, true), pg_get_expr(p.polwithcheck, p.polrelid, true)"
        " FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_USER_SCHEMA} ORDER BY c.relname, p.polname",
    ):
        text = f"CREATE POLICY {name} ON {table}"
        if not permissive:
            text += " AS RESTRICTIVE"
        if command in _POLICY_COMMANDS:
            text += f" FOR {_POLICY_COMMANDS[command]}"
        if roles:
            text += f" TO {roles}"
        if using is not None:
            text += f"\n    USING ({using})"
        if check is not None:
            text += f"\n    WITH CHECK ({check})"
        out.append(text + ";")
    return out


def _pg_grants(conn: sa.Connection) -> list[str]:
    """Privileges on tables, views and sequences granted to anyone but the owner."""
    rows = _rows(
        conn,
        "SELECT c.oid::regclass::text, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,"
        " CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,"
        " string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type),"
        " bool_or(a.is_grantable)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
        " LATERAL aclexplode(c.relacl) a"
        f" WHERE {_USER_SCHEMA} AND a.grantee <> c.relowner"
        " GROUP BY 1, 2, 3 ORDER BY 1, 3",
    )
    return [
        f"GRANT {privileges} ON {kind} {name} TO {grantee}"
        f"{' WITH GRANT OPTION' if grantable else ''};"
        for name, kind, grantee, privileges, grantable in rows
    ]


# --- comparing and writing -------------------------------------------------------------------


def difference(dialect: str, generated: str, directory: Path | None = None) -> str | None:
    """``None`` when the checked-in file of ``dialect`` reads ``generated``; else a message
    with the unified diff (checked-in to generated) and the command that regenerates it."""
    path = snapshot_path(dialect, directory)
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = ""
    if current == generated:
        return None
    diff = "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            fromfile=f"{path} (checked in)",
            tofile=f"{path} (what head creates)",
        )
    )
    state = "is missing" if not current else "is out of date"
    note = ""
    origins = [_origin(text) for text in (current, generated)]
    if current and origins[0] != origins[1]:
        # E.g. a server of another major version: the same revisions, printed differently.
        note = f"It was generated from {origins[0]}; this run read {origins[1]}.\n"
    return (
        f"{path} {state}: the schema the revisions build differs from it.\n{note}"
        f"Regenerate it with `{REGENERATE_COMMAND}` ({POSTGRES_URL_ENV} naming a PostgreSQL"
        " server) and commit the result.\n\n" + diff
    )


def _origin(text: str) -> str:
    prefix = "-- Generated from "
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].rstrip(".")
    return "an unknown source"


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], object] = print) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nexus.storage.schema_dump",
        description="Describe the schema at head per dialect (schema/sqlite.sql,"
        " schema/postgresql.sql): compare with the checked-in files, or --write them.",
    )
    parser.add_argument("--write", action="store_true", help="rewrite the files")
    parser.add_argument(
        "--dialect", choices=DIALECTS, action="append", help="only this one (repeatable)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_ENV),
        help=f"a PostgreSQL server URL (default: ${POSTGRES_URL_ENV}); a throwaway database"
        " is created on it and dropped",
    )
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIRECTORY, help=f"default: {DEFAULT_DIRECTORY}"
    )
    args = parser.parse_args(argv)
    dialects = args.dialect or list(DIALECTS)
    if "postgresql" in dialects and not args.postgres_url:
        parser.error(
            f"the PostgreSQL file needs a server: set {POSTGRES_URL_ENV} or pass --postgres-url"
            " (or --dialect sqlite for the SQLite file alone)"
        )
    drift = False
    for dialect in dialects:
        generated = dump(dialect, args.postgres_url)
        path = snapshot_path(dialect, args.dir)
        message = difference(dialect, generated, args.dir)
        if args.write:
            if message is None:
                out(f"{path}: up to date")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(generated, encoding="utf-8")
                out(f"{path}: written ({len(generated.splitlines())} lines)")
        elif message is None:
            source = "" if dialect == "sqlite" else f" (server {display_url(args.postgres_url)})"
            out(f"{path}: up to date{source}")
        else:
            out(message)
            drift = True
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
