"""What every action handler gets and gives back, and the errors it may raise.

AgentError
└── ActionError
    ├── CommandRefused      the command failed verification (signature, device, freshness, replay)
    ├── ActionFailed        a verified command could not be carried out; the message says why
    └── DuplicateAction     two handlers registered under one action type
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vigil.agent.clock import Clock
from vigil.agent.errors import AgentError
from vigil.core.registry import DuplicateName
from vigil.wire import ActionCommand

# Test-only: apply isolation rules inside this network namespace instead of the agent's own.
ISOLATION_NETNS_ENV = "VIGIL_AGENT_TEST_ISOLATION_NETNS"
# Test-only: look for persistence entries, local accounts (/etc/passwd, /etc/shadow) and systemd units under this
# root instead of "/".
PERSISTENCE_ROOT_ENV = "VIGIL_AGENT_TEST_PERSISTENCE_ROOT"


class ActionError(AgentError):
    pass


class CommandRefused(ActionError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"command refused ({reason}): {detail}")
        self.reason, self.detail = reason, detail


class ActionFailed(ActionError):
    pass


class DuplicateAction(ActionError, DuplicateName):
    pass


@dataclass(frozen=True)
class ActionSettings:
    state_dir: Path
    server_url: str
    isolation_netns: str | None = None
    persistence_root: Path = Path("/")
    getfile_max_bytes: int = 64 * 1024 * 1024
    script_timeout_seconds: float = 120.0

    @classmethod
    def from_env(cls, state_dir: Path, server_url: str, environ: Mapping[str, str]) -> ActionSettings:
        """The settings with the test-only variables of ``environ``, which the edge (`vigil agent run`) reads."""
        return cls(state_dir, server_url, isolation_netns=environ.get(ISOLATION_NETNS_ENV) or None,
                   persistence_root=Path(environ.get(PERSISTENCE_ROOT_ENV) or "/"))

    @property
    def quarantine_dir(self) -> Path:
        return self.state_dir / "quarantine"

    @property
    def work_dir(self) -> Path:
        """Live response's putfile folder; emptied whenever the agent starts, like Defender's on reboot."""
        return self.state_dir / "live-response"


@dataclass(frozen=True)
class Outcome:
    message: str
    output: dict[str, Any] = field(default_factory=dict)
    artifact: Path | None = None  # uploaded, then deleted


@dataclass(frozen=True)
class ActionContext:
    settings: ActionSettings
    clock: Clock
    # Long-lived helpers some handlers keep state in (the exec restriction's listener thread).
    services: dict[str, Any] = field(default_factory=dict)
    event: Callable[[str, dict[str, Any]], None] = lambda _action, _fields: None


class ActionHandler(Protocol):
    def __call__(self, ctx: ActionContext, command: ActionCommand, /) -> Outcome: ...
