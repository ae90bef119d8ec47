"""Who a pid is, for sensors that only see pids: the process sensor's table first, /proc second."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from vigil.agent.clock import iso
from vigil.agent.sensors.procfs import HashCache, ProcessInfo, UserNames, boot_time, read_process

ProcessSource = Callable[[int], ProcessInfo | None]

_TTL_SECONDS = 5.0


class ProcessDirectory:
    """Shared by the sensors of one agent. The process sensor attaches its tracker, which still
    knows processes that already exited; without it, /proc is read (and cached briefly)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._source: ProcessSource | None = None
        self._users = UserNames()
        self._hashes = HashCache()
        self._boot = boot_time()
        self._cache: OrderedDict[int, tuple[float, ProcessInfo]] = OrderedDict()
        self._max = max_entries
        # The columns last built per pid, with the two descriptions they came from: a process that
        # writes 1,000 files is described once, not 1,000 times (ten columns, a timestamp each).
        self._columns: OrderedDict[int, tuple[ProcessInfo, ProcessInfo | None, dict[str, Any]]] = OrderedDict()

    def attach(self, source: ProcessSource | None) -> None:
        self._source = source

    def describe(self, pid: int) -> ProcessInfo | None:
        if pid <= 0:
            return None
        source = self._source
        if source is not None:
            found = source(pid)
            if found is not None and found.exe:
                return found
        now = time.monotonic()
        cached = self._cache.get(pid)
        if cached is not None and now - cached[0] < _TTL_SECONDS:
            return cached[1]
        info = read_process(pid, self._users, self._hashes, self._boot)
        if not info.exe:
            return None  # gone before it could be read
        self._cache[pid] = (now, info)
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return info

    def initiating(self, pid: int) -> dict[str, Any]:
        """The InitiatingProcess* columns for the process that acted (Defender's naming)."""
        info = self.describe(pid)
        if info is None:
            return {"InitiatingProcessId": pid} if pid > 0 else {}
        parent = self.describe(info.ppid) if info.ppid > 0 else None
        known = self._columns.get(pid)
        if known is not None and known[0] is info and known[1] is parent:
            return dict(known[2])  # a copy: callers add to it
        columns = {
            "InitiatingProcessId": pid,
            "InitiatingProcessFileName": info.file_name or None,
            "InitiatingProcessFolderPath": info.folder_path or None,
            "InitiatingProcessCommandLine": info.command_line or None,
            "InitiatingProcessSHA256": info.sha256 or None,
            "InitiatingProcessCreationTime": iso(info.start_time) if info.start_time else None,
            "InitiatingProcessAccountName": info.account or None,
            "InitiatingProcessPosixUserId": info.uid if info.uid >= 0 else None,
            "InitiatingProcessParentId": info.ppid if info.ppid > 0 else None,
            "InitiatingProcessParentFileName": parent.file_name or None if parent else None,
        }
        self._columns[pid] = (info, parent, columns)
        if len(self._columns) > self._max:
            self._columns.popitem(last=False)
        return dict(columns)
