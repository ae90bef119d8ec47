"""The server's background jobs (retention, custom detections, automated investigations): one loop, one thread each."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol


class Worker(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class PeriodicWorker:
    """Runs `job` every `interval` seconds until stopped; a failing round is logged and the next one still runs."""

    def __init__(self, name: str, interval: float, job: Callable[[], object], log: logging.Logger,
                 wait_first: bool = False) -> None:
        self.name, self.interval, self.job, self.log, self.wait_first = name, interval, job, log, wait_first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"vigil-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        if self.wait_first and self._stop.wait(self.interval):
            return
        while not self._stop.is_set():
            try:
                self.job()
            except Exception:
                # A background job failing must be loud but must never stop the server.
                self.log.exception("%s failed; trying again in %.0f s", self.name, self.interval)
            self._stop.wait(self.interval)
