"""Real receivers on loopback for the streaming tests and the export benchmark: syslog over TCP and an HTTP endpoint.

Each keeps every record it got, by record id, and can go down (refuse connections, or drop open ones mid-read)
and come back on the same port.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import free_port

RECORD_ID = re.compile(rb'recordId="([^"]+)"')


class Records:
    """Records by id; ``copies`` counts how often each id arrived, ``bodies`` what each carried."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.copies: Counter[str] = Counter()
        self.bodies: dict[str, Any] = {}
        self.conflicts: list[str] = []

    def add(self, record_id: str, body: Any) -> None:
        with self.lock:
            self.copies[record_id] += 1
            if record_id in self.bodies and self.bodies[record_id] != body:
                self.conflicts.append(record_id)  # the same id with other content: a real duplicate
            self.bodies.setdefault(record_id, body)

    def unique(self) -> int:
        with self.lock:
            return len(self.copies)


def _abort(conn: socket.socket) -> None:
    # SO_LINGER 0: close with RST, like a receiver that dies, not one that finished reading.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class SyslogReceiver:
    """RFC 6587 octet-counted syslog over TCP; closes its side after the sender's end of stream, as rsyslog does."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.records = Records()
        self.frames = 0
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        # Frames to read before dropping the connection mid-stream (once); None reads everything.
        self.drop_after: int | None = None

    def start(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self._sock = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def stop(self) -> None:
        if self._sock is not None:
            # close() alone leaves the listener alive while the accept thread is blocked in accept(): the kernel
            # holds the socket for that call, which then takes one more connection after the "stop". shutdown()
            # ends the accept and the listening.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        with self._lock:
            for c in list(self._conns):
                _abort(c)
            self._conns.clear()

    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    space = buf.find(b" ")
                    if space < 0 or len(buf) < space + 1 + int(buf[:space]):
                        break
                    n = int(buf[:space])
                    frame, buf = buf[space + 1:space + 1 + n], buf[space + 1 + n:]
                    if self.drop_after is not None:
                        if self.drop_after == 0:
                            self.drop_after = None
                            _abort(conn)
                            return
                        self.drop_after -= 1
                    m = RECORD_ID.search(frame)
                    assert m, frame[:200]
                    self.frames += 1
                    self.records.add(m.group(1).decode(), frame.split(b"] ", 1)[1])
            conn.close()  # the sender's end of stream: all read, so close ours (its acknowledgement)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)


def _webhook(body: bytes) -> tuple[list[tuple[str, Any]], bytes]:
    return [(r["recordId"], r) for r in json.loads(body)["records"]], b""


def _hec(body: bytes) -> tuple[list[tuple[str, Any]], bytes]:
    events = [json.loads(line) for line in body.splitlines() if line.strip()]
    return [(e["event"]["recordId"], e) for e in events], b'{"text":"Success","code":0}'


def _bulk(body: bytes) -> tuple[list[tuple[str, Any]], bytes]:
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    pairs = [(action["create"]["_id"], doc) for action, doc in zip(lines[::2], lines[1::2], strict=True)]
    items = [{"create": {"_id": i, "status": 201}} for i, _ in pairs]
    return pairs, json.dumps({"took": 1, "errors": False, "items": items}).encode()


# What the receiver parses: Defender's streaming envelope, Splunk HEC's event lines, Elasticsearch's _bulk.
SHAPES = {"webhook": _webhook, "splunk_hec": _hec, "elasticsearch": _bulk}


class HttpReceiver:
    """A webhook endpoint taking ``{"records": [...]}`` (or ``shape``: HEC lines, a _bulk body); ``fail_with``
    makes it answer that status instead."""

    def __init__(self, port: int | None = None, shape: str = "webhook") -> None:
        self.port = port or free_port()
        self.parse = SHAPES[shape]
        self.records = Records()
        self.requests = 0
        self.fail_with: int | None = None
        self.auth: str | None = None
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ingest"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                receiver.auth = self.headers.get("Authorization")
                if receiver.fail_with:
                    self.send_response(receiver.fail_with)
                    self.end_headers()
                    return
                pairs, answer = receiver.parse(body)
                for record_id, r in pairs:
                    receiver.records.add(record_id, r)
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
