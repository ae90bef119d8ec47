"""The endpoint's threat history: every detection (scan or real-time), with what was done, as JSON lines."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from vigil.av.model import Detection

KEEP = 10_000  # entries; the file is cut to the newest half when it grows past twice this


@dataclass(frozen=True)
class ThreatRecord:
    time: str
    name: str
    type: str
    severity: str
    path: str
    member: str | None
    source: str  # "Real-time protection", "Antivirus" (a scan), "Custom scan", ...
    action: str  # Blocked, Quarantined, None (reported only), ...

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ThreatHistory:
    def __init__(self, file: Path) -> None:
        self.file = file
        self._lock = threading.Lock()

    def record(self, detections: Iterable[Detection], *, when: datetime, source: str, action: str) -> None:
        lines = [json.dumps(ThreatRecord(when.isoformat(), d.threat.name, str(d.threat.type),
                                         str(d.threat.severity), d.path, d.member, source, action).as_dict())
                 for d in detections]
        if not lines:
            return
        with self._lock:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write("\n".join(lines) + "\n")
            if self.file.stat().st_size > KEEP * 2 * 300:
                self._trim()

    def _trim(self) -> None:
        kept = self.file.read_text().splitlines()[-KEEP:]
        tmp = self.file.with_name(f".{self.file.name}.tmp")
        tmp.write_text("\n".join(kept) + "\n")
        os.replace(tmp, self.file)

    def list(self) -> list[ThreatRecord]:
        try:
            text = self.file.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(ThreatRecord(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line cut by a crash mid-write
        return out
