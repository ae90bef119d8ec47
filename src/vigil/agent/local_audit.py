"""The endpoint's own audit file: state-changing `vigil agent` / `vigil av` verbs run on the endpoint.

Those verbs change only the agent's state directory and need no server (an air-gapped definitions import, a
quarantine restore while the server is down), so they cannot write the server's audit log. Each change is one
JSON line appended to ``<state dir>/audit.jsonl``: opened append-only, mode 0600, never rewritten by Vigil.
It is evidence against a careless operator, not against root on the endpoint, who can edit any local file.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"


def _os_user() -> str:
    try:
        user = os.getlogin()
    except OSError:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def record(state_dir: Path, action: str, target: str, details: dict[str, Any] | None = None,
           now: datetime | None = None) -> None:
    """Append one record (``cli:user@host`` as the actor, as the server's CLI audit names it)."""
    line = json.dumps({"time": (now or datetime.now(UTC)).isoformat(), "actor": f"cli:{_os_user()}",
                       "action": action, "target": target, "details": details or {}}, sort_keys=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def entries(state_dir: Path) -> list[dict[str, Any]]:
    """The records, oldest first (none when the file does not exist)."""
    path = state_dir / AUDIT_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
