"""The hunting runner on SQLAlchemy: one read-only transaction per query, stopped at its time quota.

SQLite: ``PRAGMA query_only`` and a progress handler that aborts past the deadline. PostgreSQL: ``SET
TRANSACTION READ ONLY`` and ``statement_timeout``. The query itself was checked by ``vigil.hunt.sql``.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from vigil.app.hunting import QueryFailed, QueryTimeout


class SqlHuntRunner:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = "postgres" if engine.dialect.name == "postgresql" else "sqlite"

    def run(self, sql: str, timeout_s: float) -> tuple[list[str], list[tuple[Any, ...]]]:
        if self.dialect == "postgres":
            return self._run_pg(sql, timeout_s)
        return self._run_sqlite(sql, timeout_s)

    def _run_pg(self, sql: str, timeout_s: float) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            try:
                with conn.begin():
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
                    cur = raw.cursor()
                    try:
                        cur.execute(sql)
                        names = [d.name for d in cur.description or ()]
                        rows = [tuple(r) for r in cur.fetchall()]
                    finally:
                        cur.close()
            except sa.exc.DBAPIError as e:
                raise self._failure(e) from None
            except Exception as e:  # psycopg errors raised by the raw cursor
                raise self._failure(e) from None
        return names, rows

    def _run_sqlite(self, sql: str, timeout_s: float) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self.engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            deadline = time.monotonic() + timeout_s
            timed_out = [False]

            def progress() -> int:
                if time.monotonic() > deadline:
                    timed_out[0] = True
                    return 1
                return 0

            raw.execute("PRAGMA query_only = ON")
            raw.set_progress_handler(progress, 10_000)
            try:
                cur = raw.execute(sql)
                names = [d[0] for d in cur.description or ()]
                rows = [tuple(r) for r in cur.fetchall()]
            except Exception as e:
                if timed_out[0]:
                    raise QueryTimeout() from None
                raise QueryFailed(str(e)) from None
            finally:
                raw.set_progress_handler(None, 0)
                raw.execute("PRAGMA query_only = OFF")
                conn.rollback()
        return names, rows

    @staticmethod
    def _failure(e: Exception) -> Exception:
        orig = getattr(e, "orig", e)
        if type(orig).__name__ == "QueryCanceled" or "statement timeout" in str(orig):
            return QueryTimeout()
        return QueryFailed(str(orig).splitlines()[0] if str(orig) else type(orig).__name__)
