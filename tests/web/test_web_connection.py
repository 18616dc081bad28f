"""The dashboard of a database that has gone away answers 503 with the message every other
entry point gives (DatabaseNotFoundError: which database, and that the server has none)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from webtools import Client

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.web import create_app


@pytest.mark.postgresql
def test_the_dashboard_serves_a_vanished_database_as_503(pg_server: Any) -> None:
    url = pg_server.create_database()
    store = SQLAlchemyMetadataStore(url)
    app = create_app(store)
    try:
        store.put("/a")
        with pg_server.admin.connect() as conn:
            name = sa.engine.make_url(url).database
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        response = Client(app).get("/api/overview")
        assert response.status_code == 503
        assert response.json()["error"] == (
            f"no nexus database at {sa.engine.make_url(url).render_as_string(hide_password=True)}:"
            f" the server has no database '{name}'"
        )
    finally:
        app.state.nexus.close()
        store.close()


