"""Agent settings from TOML: /etc/vigil/agent.toml (local), then /etc/vigil/managed.toml, which wins.

Keys are AgentConfig's field names; the sections ``[file]``, ``[network]``, ``[logon]`` and ``[antivirus]``
prefix their keys (``[file] paths`` is ``file_paths``, ``[antivirus] mode`` is ``av_mode``), ``[budget]``
holds BudgetLimits and
``[budget.rate_limits]`` maps sensor names to events per second.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.agent.budget import BudgetLimits
from vigil.agent.config import DEFAULT_STATE_DIR, AgentConfig
from vigil.agent.errors import AgentError

LOCAL_CONFIG = Path("/etc/vigil/agent.toml")
MANAGED_CONFIG = Path("/etc/vigil/managed.toml")

_SECTIONS = {"file": "file_", "network": "network_", "logon": "", "antivirus": "av_"}
_PATHS = {"state_dir", "log_file", "wtmp_path", "btmp_path", "bpf_object_path", "network_bpf_object_path"}
_FIELDS = {f.name: f for f in dataclasses.fields(AgentConfig)}
_BUDGET_FIELDS = {f.name for f in dataclasses.fields(BudgetLimits)} - {"rate_limits"}


class ConfigFileError(AgentError):
    """A settings file cannot be used; names the file and the key."""

    def __init__(self, path: Path, key: str | None, problem: str) -> None:
        super().__init__(f"{path}{f': {key}' if key else ''}: {problem}")
        self.path = path
        self.key = key


@dataclass(frozen=True)
class LoadedConfig:
    config: AgentConfig
    sources: tuple[Path, ...]  # the files read, in order of precedence (last wins)
    managed_keys: tuple[str, ...]  # settings the managed file enforces over local ones


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(path, None, f"not valid TOML: {e}") from e
    except OSError as e:
        raise ConfigFileError(path, None, f"cannot read: {e.strerror}") from e


def _coerce(path: Path, key: str, value: Any, default: Any) -> Any:
    if key in _PATHS:
        if not isinstance(value, str):
            raise ConfigFileError(path, key, "expected a path string")
        return Path(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigFileError(path, key, "expected a list of strings")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigFileError(path, key, "expected true or false")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigFileError(path, key, f"expected a string, got {type(value).__name__}")
        return value
    if not isinstance(value, bool):
        if isinstance(default, float) and isinstance(value, int | float):
            return float(value)
        if isinstance(default, int) and isinstance(value, int):
            return value
    raise ConfigFileError(path, key, f"expected {type(default).__name__}, got {type(value).__name__}")


def flatten(path: Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    """AgentConfig keyword arguments from one file (budget keys as ``budget.<name>``)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in _SECTIONS and isinstance(value, dict):
            for sub, v in value.items():
                out.update(flatten(path, {_SECTIONS[key] + sub: v}))
        elif key == "budget" and isinstance(value, dict):
            for sub, v in value.items():
                if sub == "rate_limits":
                    if not isinstance(v, dict) or not all(isinstance(r, int | float) for r in v.values()):
                        raise ConfigFileError(path, "budget.rate_limits", "expected a table of sensor = events/s")
                    out["budget.rate_limits"] = tuple((n, float(r)) for n, r in v.items())
                elif sub in _BUDGET_FIELDS:
                    if isinstance(v, bool) or not isinstance(v, int | float):
                        raise ConfigFileError(path, f"budget.{sub}", "expected a number")
                    out[f"budget.{sub}"] = v
                else:
                    known = ", ".join(sorted(_BUDGET_FIELDS))
                    raise ConfigFileError(path, f"budget.{sub}", f"unknown setting (known: {known})")
        elif key in _FIELDS and key != "budget":
            field = _FIELDS[key]
            default = field.default if field.default is not dataclasses.MISSING else None
            out[key] = _coerce(path, key, value, default) if default is not None or key in _PATHS else value
        else:
            raise ConfigFileError(path, key, "unknown setting")
    return out


def load_config(
    local: Path | None = LOCAL_CONFIG,
    managed: Path | None = MANAGED_CONFIG,
    overrides: Mapping[str, Any] | None = None,
    default_state: Path = DEFAULT_STATE_DIR,
) -> LoadedConfig:
    """Defaults, then the local file, then ``overrides`` (command-line flags), then the managed file.

    ``default_state`` is the state folder when none of them names one (the CLI passes its environment's).
    A missing file is skipped; an unreadable or invalid one raises ConfigFileError."""
    merged: dict[str, Any] = {}
    sources: list[Path] = []
    local_keys: set[str] = set()
    if local is not None and local.exists():
        merged.update(flatten(local, _read(local)))
        sources.append(local)
    local_keys |= set(merged) | set(overrides or {})
    merged.update(overrides or {})
    managed_keys: list[str] = []
    if managed is not None and managed.exists():
        enforced = flatten(managed, _read(managed))
        managed_keys = sorted(k for k in enforced if k in local_keys and merged[k] != enforced[k])
        merged.update(enforced)
        sources.append(managed)
    budget = {k.removeprefix("budget."): merged.pop(k) for k in [k for k in merged if k.startswith("budget.")]}
    merged.setdefault("state_dir", default_state)
    where = sources[-1] if sources else Path("<command line>")
    try:
        limits = BudgetLimits(**budget)
        config = AgentConfig(**merged, budget=limits)
    except (TypeError, ValueError) as e:
        raise ConfigFileError(where, None, str(e)) from e
    return LoadedConfig(config, tuple(sources), tuple(managed_keys))
