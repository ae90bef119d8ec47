"""The store every contract test runs against: the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.app.memory import MemoryStore
from vigil.app.ports import Store
from vigil.app.stores import open_engine, sql_store


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    engine = open_engine(url, migrate=True)
    try:
        yield sql_store(engine)
    finally:
        engine.dispose()
