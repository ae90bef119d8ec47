"""What `vigil agent health` shows, read from the state directory (works with the agent stopped)."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vigil.agent.errors import AgentError, IdentityError
from vigil.agent.identity import load_identity
from vigil.agent.runner import META_PID, META_PROVIDERS, META_SENSORS, META_STARTED
from vigil.agent.spool import SPOOL_FILE, held_batches, read_counters, read_meta
from vigil.agent.uploader import META_LAST_ERROR, META_LAST_HEARTBEAT, META_REVOKED
from vigil.wire import AgentCounters


@dataclass(frozen=True)
class AgentHealth:
    state_dir: str
    enrolled: bool
    device_id: str | None = None
    server_url: str | None = None
    group: str | None = None
    enrolled_at: str | None = None
    running_pid: int | None = None
    started_at: str | None = None
    revoked: str | None = None
    sensors: dict[str, str] = field(default_factory=dict)
    # sensor -> {"provider": "ebpf" | "proc_connector" | "audit" | ..., "why": ...} for sensors that choose one
    providers: dict[str, dict[str, str]] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=lambda: AgentCounters().model_dump())
    spool_depth: int = 0
    pending_batches: int = 0
    dead_letter_batches: int = 0
    held_batches: int = 0  # set aside after repeated server errors; `vigil agent resend-held` sends them again
    held_events: int = 0
    last_upload_at: str | None = None
    last_heartbeat_at: str | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def get(self, dotted: str) -> Any:
        """A field by dotted path, e.g. ``counters.dropped.spool_full``."""
        value: Any = self.as_dict()
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise AgentError(f"no health field {dotted!r} (fields: {', '.join(self.as_dict())})")
            value = value[part]
        return value


def _alive(pid_text: str | None) -> int | None:
    if not pid_text or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    return pid if os.path.exists(f"/proc/{pid}") else None


def read_health(state_dir: Path) -> AgentHealth:
    try:
        identity = load_identity(state_dir)
    except IdentityError:
        identity = None
    base: dict[str, Any] = {"state_dir": str(state_dir), "enrolled": identity is not None}
    if identity is not None:
        base.update(device_id=identity.device_id, server_url=identity.server_url, group=identity.group,
                    enrolled_at=identity.enrolled_at)
    spool_path = state_dir / SPOOL_FILE
    if not spool_path.exists():
        return AgentHealth(**base)
    db = sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True)
    try:
        db.execute("PRAGMA busy_timeout=2000")
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
            # The agent has created the spool file but not yet its tables: nothing to report so far.
            return AgentHealth(**base)
        meta = {k: read_meta(db, k) for k in (META_PID, META_STARTED, META_REVOKED, META_SENSORS, META_PROVIDERS,
                                                "last_upload_at", META_LAST_HEARTBEAT, META_LAST_ERROR)}
        held = held_batches(db)
        return AgentHealth(
            **base,
            running_pid=_alive(meta[META_PID]),
            started_at=meta[META_STARTED],
            revoked=meta[META_REVOKED],
            sensors=json.loads(meta[META_SENSORS] or "{}"),
            providers=json.loads(meta[META_PROVIDERS] or "{}"),
            counters=read_counters(db).model_dump(),
            spool_depth=db.execute("SELECT COUNT(*) FROM events").fetchone()[0],
            pending_batches=db.execute("SELECT COUNT(*) FROM batches").fetchone()[0],
            dead_letter_batches=db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0],
            held_batches=len(held),
            held_events=sum(h.events for h in held),
            last_upload_at=meta["last_upload_at"],
            last_heartbeat_at=meta[META_LAST_HEARTBEAT],
            last_error=meta[META_LAST_ERROR],
        )
    except sqlite3.Error as e:
        raise AgentError(f"cannot read the spool at {spool_path}: {e}") from e
    finally:
        db.close()
