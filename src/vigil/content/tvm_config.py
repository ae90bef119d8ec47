"""The host as the secure configuration checks (`vigil.tvm.configuration`) read it: paths under a root folder,
`/` on a real host, a fixture tree in tests. `/proc` is read from the live system unless the root has its own."""

from __future__ import annotations

import os
from pathlib import Path


class RootView:
    def __init__(self, root: Path = Path("/"), proc: Path | None = None) -> None:
        self.root = root
        self.proc = proc if proc is not None else (root / "proc" if (root / "proc").is_dir() else Path("/proc"))

    def _path(self, path: str) -> Path:
        if path.startswith("/proc/"):
            return self.proc / path[len("/proc/"):]
        return self.root / path.lstrip("/")

    def read(self, path: str) -> str | None:
        try:
            return self._path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def listdir(self, path: str) -> list[str] | None:
        try:
            return os.listdir(self._path(path))
        except OSError:
            return None

    def mode(self, path: str) -> int | None:
        try:
            return os.stat(self._path(path)).st_mode
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.lexists(self._path(path))
