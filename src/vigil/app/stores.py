"""Where the edges get a store: the SQLAlchemy one for an engine, so server and commands never import vigil.store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vigil.app.ports import HuntableStore, Store

if TYPE_CHECKING:
    from vigil.app.hunting import HuntRunner
    from vigil.store.sql import ActionIssuerFn


def sql_store(engine: Any, issue_action: ActionIssuerFn | None = None) -> HuntableStore:
    """The store on ``engine`` (an SQLAlchemy engine); ``issue_action`` is the server's signing path."""
    from vigil.store.sql import SqlStore

    return SqlStore(engine, issue_action)


def open_engine(db_url: str, migrate: bool = False) -> Any:
    """An engine for a command that opens the database itself; ``migrate`` brings the schema up to date."""
    from vigil.store import db

    engine = db.make_engine(db_url)
    if migrate:
        db.upgrade(engine)
    return engine


def application_store(engine: Any) -> Any:
    """OAuth2 applications and their tokens (``vigil.app.applications.ApplicationStore``) on ``engine``."""
    from vigil.store.oauth import SqlApplicationStore

    return SqlApplicationStore(engine)


def destination_store(engine: Any) -> Any:
    """Streaming destinations (``vigil.app.streaming.DestinationStore``) on ``engine``."""
    from vigil.store.export import SqlDestinationStore

    return SqlDestinationStore(engine)


def source_store(engine: Any) -> Any:
    """Windows event sources (``vigil.app.shippers.SourceStore``) on ``engine``."""
    from vigil.store.sources import SqlSourceStore

    return SqlSourceStore(engine)


def hunt_runner(store: HuntableStore) -> HuntRunner:
    """The hunting runner on ``store``'s database (``store.hunt_runner()``, kept for its callers)."""
    return store.hunt_runner()


def detection_repository(store: Store) -> Any:
    """Custom detection rules (``vigil.app.detections.DetectionRepository``) on ``store``'s database."""
    from vigil.store.detections import SqlDetections

    return SqlDetections(store.engine)  # type: ignore[attr-defined]


def history_reader(store: Store) -> Any:
    """Stored telemetry read back in order (``vigil.app.backtest.HistoryReader``) on ``store``'s database."""
    from vigil.store.history import SqlHistory

    return SqlHistory(store.engine)  # type: ignore[attr-defined]
