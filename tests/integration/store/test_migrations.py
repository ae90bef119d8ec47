"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from vigil.store import db
from vigil.store.schema import metadata


def test_migrations_match_the_declared_schema(db_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'm.db'}")
    try:
        db.upgrade(engine)
        db.upgrade(engine)  # idempotent on every start
        assert db.current_revision(engine) == db.head_revision(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"schema drift; generate a migration: {diff}"
    finally:
        engine.dispose()
