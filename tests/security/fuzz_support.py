"""The fuzz suite's harness: one real server for the whole run, bodies sent a few at a time over keep-alive TLS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, Phase, settings

from tests.support import VigilServer, enroll_raw

CONCURRENCY = 4  # requests in flight: the server's one process has more to do than the client's threads


def fuzz_settings(max_examples: int) -> settings:
    """Deterministic (derandomized, no example database written into the repository), no deadline."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        # filter_too_much: schemathesis' negative mode discards many drafts on a schema with many enum members
        # (the action result route), which is its way of making them invalid, not a weak test.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                               HealthCheck.filter_too_much],
        print_blob=False,
    )


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    credential: str | None = None  # None: the fuzzing device's own


@dataclass(frozen=True)
class Answer:
    status: int
    text: str

    def json(self) -> Any:
        return orjson.loads(self.text)


@dataclass
class Fuzz:
    server: VigilServer
    device_id: str
    credential: str
    other_device_id: str
    sent: int = 0
    _log_offset: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)
    _clients: list[httpx.Client] = field(default_factory=list)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(CONCURRENCY))

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.server.client()
            with self._lock:
                self._clients.append(client)
        return client

    def _send(self, req: Request) -> Answer:
        headers = {"Authorization": f"Bearer {req.credential or self.credential}", **req.headers}
        r = self._client().post(req.path, content=req.body, headers=headers)
        return Answer(r.status_code, r.text)  # whole: a long list of rejects must still parse

    def send(self, requests: list[Request]) -> list[Answer]:
        answers = list(self._pool.map(self._send, requests))
        with self._lock:
            self.sent += len(requests)
        return answers

    def new_log(self) -> str:
        """What the server logged since the last call."""
        text = self.server.log.read_text(errors="replace")
        new, self._log_offset = text[self._log_offset:], len(text)
        return new

    def close(self) -> None:
        self._pool.shutdown()
        for c in self._clients:
            c.close()


def start_fuzz(data_dir: Path, db_url: str) -> Iterator[Fuzz]:
    server = VigilServer.create(data_dir, db_url)
    server.start()
    try:
        pkg = server.onboarding_package(expires="1h", uses=2)
        a = enroll_raw(server, pkg["token"], "fuzz-a").json()
        b = enroll_raw(server, pkg["token"], "fuzz-b").json()
        fuzz = Fuzz(server, a["device_id"], a["credential"], b["device_id"])
        fuzz.new_log()
        try:
            yield fuzz
        finally:
            fuzz.close()
    finally:
        server.stop()


def server_errors(requests: list[Request], answers: list[Answer]) -> list[str]:
    """Each request the server answered with 5xx, shortened for the failure message."""
    return [f"{a.status} for {r.path} {r.body[:300]!r}: {a.text[:300]}"
            for r, a in zip(requests, answers, strict=True) if a.status >= 500]
