"""The agent's HTTP transport (standard library http.client) against loopback servers: pinned TLS, keep-alive,
timeouts, typed outcomes, streamed uploads, enrollment errors, an HTTP proxy."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.unit.agent.pki import ThrowawayCA, make_ca
from vigil import __version__
from vigil.agent.enroll import enroll
from vigil.agent.errors import AgentError, EnrollmentError, ServerRejected
from vigil.agent.identity import Identity, ca_fingerprint
from vigil.agent.transport import AgentTransport, CredentialRevoked, ProxyEnv, ServerUnavailable
from vigil.wire import ACTIONS_POLL_PATH, ENROLL_PATH, HEARTBEAT_PATH, TELEMETRY_PATH, ActionResult, Heartbeat

PREFIX = "/vigil"
Behaviour = Callable[["Handler", bytes], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn
    server: FakeServer

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, doc: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        path = self.path.removeprefix(PREFIX)
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                         "peer": self.client_address[1]})
        behaviour = self.server.behaviours.get(path.split("?")[0])
        if behaviour is not None:
            behaviour(self, body)
        elif path.startswith(HEARTBEAT_PATH):
            self.answer(200, {"server_time": datetime.now(UTC).isoformat(), "commands": []})
        elif path.startswith(TELEMETRY_PATH):
            doc = json.loads(gzip.decompress(body))
            self.answer(200, {"batch_id": doc["batch_id"], "accepted": len(doc["events"]), "duplicate": False})
        else:
            self.answer(200, {"commands": []})


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ca: ThrowawayCA, pem_dir: Path) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict[str, Any]] = []
        self.behaviours: dict[str, Behaviour] = {}
        self.lock = threading.Lock()
        cert, key = ca.server_cert()
        (pem_dir / "cert.pem").write_text(cert)
        (pem_dir / "key.pem").write_text(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pem_dir / "cert.pem", pem_dir / "key.pem")
        self.socket = ctx.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def peers(self) -> set[int]:
        with self.lock:
            return {r["peer"] for r in self.requests}


@pytest.fixture(autouse=True)
def _no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def ca() -> ThrowawayCA:
    return make_ca()


@pytest.fixture
def server(ca: ThrowawayCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeServer]:
    srv = FakeServer(ca, tmp_path_factory.mktemp("tls"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def identity_for(port: int, ca: ThrowawayCA, prefix: str = PREFIX) -> Identity:
    return Identity("dev1", "vgd_dev1.secret", f"https://127.0.0.1:{port}{prefix}/", ca.cert_pem,
                    ca_fingerprint(ca.cert_pem), "2026-01-01T00:00:00+00:00")


@pytest.fixture
def transport(server: FakeServer, ca: ThrowawayCA) -> Iterator[AgentTransport]:
    t = AgentTransport(identity_for(server.port, ca), 0.5)
    yield t
    t.close()


def late_answer(seconds: float, doc: object) -> Behaviour:
    def behaviour(h: Handler, _: bytes) -> None:
        time.sleep(seconds)
        h.answer(200, doc)

    return behaviour


def beat() -> Heartbeat:
    return Heartbeat(agent_version=__version__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_agent_imports_no_httpx() -> None:
    out = subprocess.run([sys.executable, "-c", "import vigil.agent.runner, sys; print('httpx' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pinned_tls_keep_alive_headers_prefix_and_gzip(server: FakeServer, transport: AgentTransport) -> None:
    transport.heartbeat(beat())
    ack = transport.send_batch(json.dumps({"batch_id": "b" * 16, "events": [{"table": "DeviceEvents"}]}).encode())
    transport.report_result("a" * 16, ActionResult(status="Succeeded"))
    assert ack.accepted == 1
    assert len(server.peers()) == 1, "the three calls share one kept-alive connection"
    first, second, third = server.requests
    assert first["path"] == PREFIX + HEARTBEAT_PATH and second["path"] == PREFIX + TELEMETRY_PATH
    assert third["path"] == f"{PREFIX}/agent/v1/actions/{'a' * 16}/result"
    for r in server.requests:
        assert r["headers"]["Authorization"] == "Bearer vgd_dev1.secret"
        assert r["headers"]["User-Agent"] == f"vigil-agent/{__version__}"
    assert second["headers"]["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(second["body"]))["batch_id"] == "b" * 16


def test_status_codes_become_typed_outcomes(server: FakeServer, transport: AgentTransport) -> None:
    outcome: dict[str, Any] = {}
    server.behaviours[HEARTBEAT_PATH] = lambda h, _: h.answer(outcome["status"], outcome["doc"],
                                                              outcome.get("headers"))
    outcome.update(status=429, doc={"error": "slow_down", "detail": "later"}, headers={"Retry-After": "7"})
    with pytest.raises(ServerUnavailable) as unavailable:
        transport.heartbeat(beat())
    assert unavailable.value.retry_after == 7.0
    outcome.update(status=503, doc={"error": "down", "detail": "x"}, headers={})
    with pytest.raises(ServerUnavailable) as unavailable:
        transport.heartbeat(beat())
    assert unavailable.value.retry_after is None
    outcome.update(status=401, doc={"error": "unauthorized", "detail": "revoked"})
    with pytest.raises(CredentialRevoked):
        transport.heartbeat(beat())
    outcome.update(status=403, doc={"error": "forbidden", "detail": "offboarded"})
    with pytest.raises(CredentialRevoked):
        transport.heartbeat(beat())
    outcome.update(status=422, doc={"error": "invalid", "detail": "bad field", "field": "counters"})
    with pytest.raises(ServerRejected) as rejected:
        transport.heartbeat(beat())
    assert (rejected.value.status, rejected.value.error, rejected.value.field) == (422, "invalid", "counters")
    assert not isinstance(rejected.value, CredentialRevoked)
    outcome.update(status=400, doc=["not", "an", "error", "body"])
    with pytest.raises(ServerRejected) as rejected:
        transport.heartbeat(beat())
    assert rejected.value.error == "Bad Request" and "not" in rejected.value.detail
    outcome.update(status=200, doc={"unexpected": True})
    with pytest.raises(ServerUnavailable, match="unreadable 200 answer"):
        transport.heartbeat(beat())
    assert len(server.peers()) == 1, "error statuses do not cost the connection"


def test_timeout_is_unavailable_and_the_next_call_reconnects(server: FakeServer, transport: AgentTransport) -> None:
    slow = {"seconds": 1.5}

    def heartbeat(h: Handler, _: bytes) -> None:
        time.sleep(slow["seconds"])
        h.answer(200, {"server_time": datetime.now(UTC).isoformat()})

    server.behaviours[HEARTBEAT_PATH] = heartbeat
    with pytest.raises(ServerUnavailable, match="TimeoutError"):
        transport.heartbeat(beat())
    slow["seconds"] = 0
    transport.heartbeat(beat())
    transport.heartbeat(beat(), timeout=1.0)
    assert len(server.peers()) == 2, "the timed-out connection is replaced once, then kept"


def test_long_poll_waits_longer_than_the_request_timeout(server: FakeServer, transport: AgentTransport) -> None:
    server.behaviours[ACTIONS_POLL_PATH] = late_answer(1.0, {"commands": []})
    assert transport.poll_commands(1).commands == []  # 1.0 s > the 0.5 s timeout, < wait + timeout
    assert server.requests[-1]["path"] == f"{PREFIX}{ACTIONS_POLL_PATH}?wait=1"


def test_a_connection_dropped_by_the_server_is_replaced(server: FakeServer, transport: AgentTransport) -> None:
    def hang_up(h: Handler, _: bytes) -> None:
        h.close_connection = True  # no answer at all

    def answer_then_close(h: Handler, _: bytes) -> None:
        h.answer(200, {"server_time": datetime.now(UTC).isoformat()})
        h.close_connection = True  # closes the kept-alive connection without saying so

    transport.heartbeat(beat())
    server.behaviours[HEARTBEAT_PATH] = hang_up
    with pytest.raises(ServerUnavailable, match="RemoteDisconnected"):
        transport.heartbeat(beat())
    server.behaviours[HEARTBEAT_PATH] = answer_then_close
    transport.heartbeat(beat())
    time.sleep(0.2)
    transport.heartbeat(beat())  # the idle connection the server closed is noticed, not used
    assert len(server.peers()) == 3


def test_refused_and_untrusted_servers_are_unavailable(server: FakeServer, ca: ThrowawayCA) -> None:
    refused = AgentTransport(identity_for(free_port(), ca), 0.5)
    with pytest.raises(ServerUnavailable, match="ConnectionRefusedError"):
        refused.heartbeat(beat())
    other = make_ca()
    untrusted = AgentTransport(identity_for(server.port, other), 0.5)
    with pytest.raises(ServerUnavailable, match="SSLCertVerificationError"):
        untrusted.heartbeat(beat())
    assert server.requests == []


def test_upload_streams_the_file_with_its_length(server: FakeServer, transport: AgentTransport,
                                                 tmp_path: Path) -> None:
    server.behaviours["/agent/v1/actions/" + "c" * 16 + "/artifact"] = lambda h, body: h.answer(
        200, {"size": len(body)})
    artifact = tmp_path / "a.bin"
    data = bytes(range(256)) * 4099  # ~1 MiB, not a multiple of the block size
    artifact.write_bytes(data)
    transport.upload_artifact("c" * 16, artifact)
    sent = server.requests[-1]
    assert sent["body"] == data and sent["headers"]["Content-Length"] == str(len(data))
    assert sent["headers"]["Content-Type"] == "application/octet-stream"


def test_threads_share_the_transport(server: FakeServer, transport: AgentTransport) -> None:
    server.behaviours[ACTIONS_POLL_PATH] = late_answer(0.8, {"commands": []})
    poller = threading.Thread(target=transport.poll_commands, args=(1,))
    poller.start()
    time.sleep(0.1)
    started = time.monotonic()
    for _ in range(5):
        transport.heartbeat(beat())
    assert time.monotonic() - started < 0.5, "heartbeats do not wait behind the long-poll"
    poller.join()
    assert len(server.peers()) == 2


def test_https_proxy_tunnels_to_the_pinned_server(server: FakeServer, ca: ThrowawayCA,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    connects: list[str] = []
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(8)

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            b.close()

    def serve() -> None:
        while True:
            try:
                client, _ = proxy.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(4096)
            connects.append(head.decode())
            target = head.split()[1].decode().rsplit(":", 1)
            upstream = socket.create_connection((target[0], int(target[1])))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        env = {"HTTPS_PROXY": f"http://agent:s%3Acret@127.0.0.1:{proxy.getsockname()[1]}"}
        t = AgentTransport(identity_for(server.port, ca), 2, ProxyEnv.of(env))
        t.heartbeat(beat())
        t.close()
        assert connects[0].startswith(f"CONNECT 127.0.0.1:{server.port} ")
        assert "Proxy-Authorization: Basic YWdlbnQ6czpjcmV0" in connects[0]  # agent:s:cret
        assert server.requests[-1]["headers"]["Authorization"] == "Bearer vgd_dev1.secret"
        env["NO_PROXY"] = "localhost,127.0.0.1"
        t = AgentTransport(identity_for(server.port, ca), 2, ProxyEnv.of(env))
        t.heartbeat(beat())
        t.close()
        assert len(connects) == 1, "NO_PROXY: straight to the server"
        # The library never reads the process environment itself: only what the edge passes in counts.
        monkeypatch.setenv("HTTPS_PROXY", env["HTTPS_PROXY"])
        t = AgentTransport(identity_for(server.port, ca), 2)
        t.heartbeat(beat())
        t.close()
        assert len(connects) == 1
    finally:
        proxy.close()


# -- enrollment ---------------------------------------------------------------------------------


def package(path: Path, ca: ThrowawayCA, url: str) -> Path:
    path.write_text(json.dumps({
        "server_url": url, "ca_cert_pem": ca.cert_pem, "ca_sha256": ca_fingerprint(ca.cert_pem), "token": "t",
        "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }))
    return path


def test_enrollment_over_the_pinned_connection(server: FakeServer, ca: ThrowawayCA, tmp_path: Path) -> None:
    server.behaviours[ENROLL_PATH] = lambda h, _: h.answer(200, {"device_id": "d1", "credential": "vgd_d1.s"})
    identity = enroll(package(tmp_path / "p.json", ca, f"https://127.0.0.1:{server.port}{PREFIX}/"),
                      tmp_path / "state", timeout=2)
    assert identity.device_id == "d1" and identity.server_url == f"https://127.0.0.1:{server.port}{PREFIX}"
    sent = server.requests[-1]
    assert sent["path"] == PREFIX + ENROLL_PATH and json.loads(sent["body"])["token"] == "t"
    assert "Authorization" not in sent["headers"]


def test_enrollment_errors_say_what_failed(server: FakeServer, ca: ThrowawayCA, tmp_path: Path) -> None:
    with pytest.raises(EnrollmentError, match=r"cannot reach the server at https://127\.0\.0\.1"):
        enroll(package(tmp_path / "p.json", ca, f"https://127.0.0.1:{free_port()}"), tmp_path / "s", timeout=2)
    server.behaviours[ENROLL_PATH] = lambda h, _: time.sleep(1.5)
    with pytest.raises(EnrollmentError, match=r"enrollment request to .* failed: TimeoutError"):
        enroll(package(tmp_path / "p.json", ca, f"https://127.0.0.1:{server.port}"), tmp_path / "s", timeout=0.5)
    server.behaviours[ENROLL_PATH] = lambda h, _: h.answer(401, {"error": "unauthorized", "detail": "used",
                                                                  "field": "token"})
    with pytest.raises(ServerRejected) as rejected:
        enroll(package(tmp_path / "p.json", ca, f"https://127.0.0.1:{server.port}"), tmp_path / "s", timeout=2)
    assert rejected.value.status == 401 and rejected.value.field == "token"
    with pytest.raises(EnrollmentError, match=r"server_url: 'ftp://127\.0\.0\.1' is not an https:// URL"):
        enroll(package(tmp_path / "p.json", ca, "ftp://127.0.0.1"), tmp_path / "s", timeout=2)


def test_the_agent_refuses_a_plain_http_server_url(server: FakeServer, ca: ThrowawayCA, tmp_path: Path) -> None:
    """Neither an onboarding package nor a (tampered) identity can point the agent at a cleartext server."""
    served = len(server.requests)
    for url in (f"http://127.0.0.1:{server.port}", f"HTTP://127.0.0.1:{server.port}", "127.0.0.1:443"):
        with pytest.raises(EnrollmentError, match=r"p\.json: server_url: .* is not an https:// URL"):
            enroll(package(tmp_path / "p.json", ca, url), tmp_path / "s", timeout=2)
    assert not (tmp_path / "s" / "identity.json").exists()
    plain = replace(identity_for(server.port, ca), server_url=f"http://127.0.0.1:{server.port}{PREFIX}")
    with pytest.raises(AgentError, match=r"server_url: 'http://127\.0\.0\.1:\d+/[^']*' is not an https:// URL"):
        AgentTransport(plain, 2)
    assert len(server.requests) == served  # refused before any byte went out
