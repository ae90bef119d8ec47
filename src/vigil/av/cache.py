"""The verdict cache: a file unchanged since it was scanned with these definitions is not scanned again."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from vigil.av.model import Verdict

CacheKey = tuple[int, int, int, int, int, str]  # device, inode, size, mtime_ns, ctime_ns, definitions version


def key_of(st: os.stat_result, version: str) -> CacheKey:
    # ctime changes on every write, chmod and rename-over, so a file rewritten within one mtime tick still misses.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, version)


class VerdictCache:
    """An LRU of verdicts, safe across scan threads."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[CacheKey, Verdict] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> Verdict | None:
        with self._lock:
            v = self._items.get(key)
            if v is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return v

    def put(self, key: CacheKey, verdict: Verdict) -> None:
        with self._lock:
            self._items[key] = verdict
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
