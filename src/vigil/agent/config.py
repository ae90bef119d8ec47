"""Agent settings, one frozen value built by the CLI (or `vigil up`) and injected everywhere."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vigil.wire import MAX_BATCH_EVENTS

DEFAULT_STATE_DIR = Path("/var/lib/vigil/agent")
STATE_DIR_ENV = "VIGIL_AGENT_STATE_DIR"


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path
    heartbeat_seconds: float = 30.0
    batch_seconds: float = 2.0
    batch_max_events: int = 2_000
    spool_max_events: int = 5_000_000
    spool_max_bytes: int = 1 << 30
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    request_timeout_seconds: float = 15.0
    shutdown_flush_seconds: float = 5.0
    device_info_seconds: float = 3600.0
    # How long an exec from the proc connector waits for its audit record (argv) before going alone.
    audit_wait_seconds: float = 0.5
    process_exit_events: bool = True
    use_audit: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.batch_max_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_max_events must be between 1 and {MAX_BATCH_EVENTS}")
        for name in ("heartbeat_seconds", "batch_seconds", "backoff_initial_seconds", "request_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.spool_max_events < self.batch_max_events:
            raise ValueError("spool_max_events must hold at least one batch")
