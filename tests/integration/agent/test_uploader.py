"""The uploader against a real HTTP server on loopback that is down, then flaky, then up."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent.support import wait_for
from tests.unit.agent.pki import make_ca
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.identity import Identity, ca_fingerprint
from vigil.agent.spool import DROP_REJECTED, Spool
from vigil.agent.transport import AgentTransport
from vigil.agent.uploader import Uploader
from vigil.wire import HEARTBEAT_PATH, TELEMETRY_PATH

# One CA for the module: the fake server's certificate, and the pin of every uploader talking to it (https only).
CA = make_ca()


def _tls_context() -> ssl.SSLContext:
    cert, key = CA.server_cert()
    folder = Path(tempfile.mkdtemp(prefix="vigil-uploader-tls-"))
    (folder / "cert.pem").write_text(cert)
    (folder / "key.pem").write_text(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    shutil.rmtree(folder)
    return ctx


class FakeServer:
    """Stores each batch id once, like the real ingest; can fail, lose acks or reject on demand."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.batches: dict[str, list[dict[str, Any]]] = {}
        self.posts: list[str] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.lose_acks = 0  # store the batch but answer 500, as if the answer got lost
        self.status: int | None = None  # force this status for telemetry
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.headers["Authorization"] == "Bearer vgd_dev1.secret"
                if self.path == HEARTBEAT_PATH:
                    fake.heartbeats.append(json.loads(raw))
                    self._answer(200, {"server_time": datetime.now(UTC).isoformat(), "commands": []})
                    return
                assert self.path == TELEMETRY_PATH
                assert self.headers["Content-Encoding"] == "gzip"
                doc = json.loads(gzip.decompress(raw))
                with fake.lock:
                    fake.posts.append(doc["batch_id"])
                    if fake.status is not None:
                        self._answer(fake.status, {"error": "nope", "detail": "forced", "field": "events[0].X"})
                        return
                    duplicate = doc["batch_id"] in fake.batches
                    if not duplicate:
                        fake.batches[doc["batch_id"]] = doc["events"]
                    else:
                        assert fake.batches[doc["batch_id"]] == doc["events"], "a resend must be identical"
                    if fake.lose_acks:
                        fake.lose_acks -= 1
                        self._answer(500, {"error": "internal", "detail": "ack lost"})
                        return
                self._answer(200, {"batch_id": doc["batch_id"], "accepted": len(doc["events"]),
                                   "duplicate": duplicate})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.socket = _tls_context().wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def report_ids(self) -> list[int]:
        with self.lock:
            return [e["ReportId"] for events in self.batches.values() for e in events]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    srv = FakeServer(free_port())
    yield srv
    srv.stop()


def make_uploader(tmp_path: Path, port: int, **cfg: Any) -> tuple[Uploader, Spool]:
    identity = Identity("dev1", "vgd_dev1.secret", f"https://127.0.0.1:{port}", CA.cert_pem,
                        ca_fingerprint(CA.cert_pem), "2026-01-01T00:00:00+00:00")
    config = AgentConfig(state_dir=tmp_path, heartbeat_seconds=0.2, batch_seconds=0.05,
                         backoff_initial_seconds=0.05, backoff_max_seconds=0.3, request_timeout_seconds=2,
                         batch_max_events=100, shutdown_flush_seconds=2, **cfg)
    clock = SystemClock()
    spool = Spool(tmp_path / "spool.db", clock)
    uploader = Uploader(spool, AgentTransport(identity, 2), identity, config, clock,
                        lambda: {"process": "active"}, device_name="host.test")
    return uploader, spool


def rows(start: int, n: int) -> list[dict[str, Any]]:
    return [{"table": "DeviceEvents", "Timestamp": "2026-01-01T00:00:00+00:00", "ActionType": "AgentStarted",
             "ProcessId": i} for i in range(start, start + n)]



def test_outage_then_recovery_delivers_every_event_exactly_once(tmp_path: Path, fake: FakeServer) -> None:
    uploader, spool = make_uploader(tmp_path, fake.port)
    uploader.start()
    spool.append(rows(0, 250))
    time.sleep(1.0)  # nothing listens: connection refused, backing off, still spooling
    spool.append(rows(250, 250))
    assert spool.depth() == 500
    fake.lose_acks = 2  # the first two batches are stored but their acks get lost
    fake.start()
    assert wait_for(lambda: spool.depth() == 0), f"{spool.depth()} events still spooled"
    spool.append(rows(500, 10))  # and it keeps going afterwards
    assert wait_for(lambda: spool.depth() == 0)
    assert wait_for(lambda: any(h["counters"]["acknowledged"] == 510 for h in fake.heartbeats))
    uploader.stop()

    ids = fake.report_ids()
    assert len(ids) == len(set(ids)) == 510
    assert len(fake.posts) > len(fake.batches), "lost acks must cause resends with the same batch id"
    c = spool.counters()
    assert (c.produced, c.spooled, c.sent, c.acknowledged, c.dropped) == (510, 510, 510, 510, {})
    assert fake.heartbeats and fake.heartbeats[-1]["sensors"] == {"process": "active"}
    events = next(iter(fake.batches.values()))
    assert all(e["DeviceId"] == "dev1" and e["DeviceName"] == "host.test" for e in events)
    spool.close()


def test_rejected_batch_is_dead_lettered_and_counted(tmp_path: Path, fake: FakeServer) -> None:
    fake.status = 422
    fake.start()
    uploader, spool = make_uploader(tmp_path, fake.port)
    spool.append(rows(0, 5))
    uploader.start()
    assert wait_for(lambda: spool.depth() == 0)
    uploader.stop()
    assert spool.counters().dropped == {DROP_REJECTED: 5}
    (dl,) = spool.dead_letters()
    assert (dl.status, dl.error, dl.field) == (422, "nope", "events[0].X")
    spool.close()


def test_revoked_credential_stops_uploads_but_spooling_goes_on(tmp_path: Path, fake: FakeServer) -> None:
    fake.status = 401
    fake.start()
    uploader, spool = make_uploader(tmp_path, fake.port)
    spool.append(rows(0, 5))
    uploader.start()
    assert wait_for(lambda: uploader.revoked)
    posts = len(fake.posts)
    spool.append(rows(5, 5))
    time.sleep(0.5)
    uploader.stop()
    assert len(fake.posts) == posts, "no more uploads after 401"
    assert spool.depth() == 10 and spool.counters().dropped == {}
    assert (spool.get_meta("revoked") or "") != ""
    spool.close()


def test_shutdown_flushes_within_the_deadline(tmp_path: Path, fake: FakeServer) -> None:
    fake.start()
    uploader, spool = make_uploader(tmp_path, fake.port)
    uploader.start()
    spool.append(rows(0, 350))
    uploader.stop()
    assert spool.depth() == 0 and len(fake.report_ids()) == 350
    spool.close()
