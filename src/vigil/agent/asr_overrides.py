"""Warn overrides: an ASR rule in Warn mode denies until the user or an admin grants an override on the device
(``vigil agent asr-override RULE``), for 24 hours unless told otherwise.

An override names one rule and, optionally, the program it lets through (``path``: the executable or file, a glob
as ASR exclusions take) and the acting process (``process``); without either it lets the rule's every match
through on this device. Overrides live in ``<state dir>/asr_overrides.json`` (0600, replaced atomically); the
running agent re-reads the file when it changes, lets the covered matches through, and reports each new override
once as a ``DeviceEvents`` row ``Asr<Rule>WarnOverridden``, which the server writes to its audit log
(``asr.warn.override``). Only a Warn decision can be overridden: Block is never.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from vigil.asr import AsrRule, Exclusion

FILE = "asr_overrides.json"
REPORTED = "asr_overrides.reported"
DEFAULT_HOURS = 24.0
MAX_HOURS = 24.0 * 30


class OverrideError(ValueError):
    """A bad override request or an unreadable overrides file; says which."""


@dataclass(frozen=True)
class Override:
    id: str
    rule_id: str
    rule_name: str
    granted: str  # ISO times
    expires: str
    granted_by: str
    path: str = ""
    process: str = ""
    reason: str = ""

    def active(self, now: datetime) -> bool:
        return datetime.fromisoformat(self.expires) > now

    def covers(self, rule_id: str, row: Mapping[str, Any], now: datetime) -> bool:
        if rule_id != self.rule_id or not self.active(now):
            return False
        if self.path and not Exclusion(self.path, "path").matches(row):
            return False
        return not self.process or Exclusion(self.process, "process").matches(row)

    def event(self, now: str) -> dict[str, Any]:
        """The DeviceEvents row that reports it."""
        return {"table": "DeviceEvents", "Timestamp": now, "ActionType": f"Asr{self.rule_name}WarnOverridden",
                "FolderPath": self.path or None, "AccountName": self.granted_by,
                "AdditionalFields": {"RuleId": self.rule_id, "RuleName": self.rule_name, "Mode": "Warn",
                                     "OverrideId": self.id, "Path": self.path or None,
                                     "Process": self.process or None, "Granted": self.granted,
                                     "Expires": self.expires, "GrantedBy": self.granted_by,
                                     "Reason": self.reason or None}}


def _read(path: Path) -> list[Override]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except ValueError as e:
        raise OverrideError(f"{path} is unreadable: {e}") from None
    if not isinstance(data, list):
        raise OverrideError(f"{path} must hold a list of overrides")
    out = []
    for n, item in enumerate(data):
        try:
            out.append(Override(**item))
            datetime.fromisoformat(out[-1].expires)
        except (TypeError, ValueError) as e:
            raise OverrideError(f"{path}: override {n}: {e}") from None
    return out


def _write(path: Path, overrides: Sequence[Override]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump([asdict(o) for o in overrides], f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def grant(state_dir: Path, rule: AsrRule, now: datetime, granted_by: str, *, hours: float = DEFAULT_HOURS,
          path: str = "", process: str = "", reason: str = "") -> Override:
    """Record an override of ``rule`` (expired ones are dropped from the file on the way)."""
    if not 0 < hours <= MAX_HOURS:
        raise OverrideError(f"--hours must be more than 0 and at most {MAX_HOURS:g}, not {hours:g}")
    for kind, pattern in (("path", path), ("process", process)):
        if pattern and not pattern.strip():
            raise OverrideError(f"--{kind} must not be blank")
    state_dir.mkdir(parents=True, exist_ok=True)
    file = state_dir / FILE
    kept = [o for o in _read(file) if o.active(now)]
    made = Override(id=secrets.token_hex(8), rule_id=rule.guid, rule_name=rule.name, granted=now.isoformat(),
                    expires=(now + timedelta(hours=hours)).isoformat(), granted_by=granted_by, path=path.strip(),
                    process=process.strip(), reason=reason.strip())
    _write(file, [*kept, made])
    return made


def revoke(state_dir: Path, override_id: str) -> Override:
    file = state_dir / FILE
    found = _read(file)
    gone = next((o for o in found if o.id == override_id), None)
    if gone is None:
        raise OverrideError(f"no override with id {override_id!r}; `vigil agent asr-override --list` lists them")
    _write(file, [o for o in found if o.id != override_id])
    return gone


def listed(state_dir: Path) -> list[Override]:
    return _read(state_dir / FILE)


class Overrides:
    """The running agent's view of the file: re-read when its mtime changes; new overrides reported once."""

    def __init__(self, state_dir: Path) -> None:
        self._file, self._reported_file = state_dir / FILE, state_dir / REPORTED
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._items: list[Override] = []

    def current(self) -> list[Override]:
        try:
            st = self._file.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._items = _read(self._file) if stamp is not None else []
                self._stamp = stamp
            return self._items

    def covering(self, rule_id: str, row: Mapping[str, Any], now: datetime) -> Override | None:
        return next((o for o in self.current() if o.covers(rule_id, row, now)), None)

    def unreported(self) -> list[Override]:
        """Overrides not reported yet; ``mark_reported`` after their rows are in the spool."""
        try:
            done = set(self._reported_file.read_text().split())
        except FileNotFoundError:
            done = set()
        return [o for o in self.current() if o.id not in done]

    def mark_reported(self, overrides: Sequence[Override]) -> None:
        if not overrides:
            return
        fd = os.open(self._reported_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, "".join(f"{o.id}\n" for o in overrides).encode())
        finally:
            os.close(fd)
