"""A loopback SMTP sink and webhook sink for notification tests: each keeps what it received."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class _Smtp(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        sink: list[dict[str, Any]] = self.server.received  # type: ignore[attr-defined]
        mail: dict[str, Any] = {"to": [], "data": ""}
        self.wfile.write(b"220 sink\r\n")
        while line := self.rfile.readline():
            cmd = line.decode().strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "DATA":
                self.wfile.write(b"354 go\r\n")
                lines = []
                while (body := self.rfile.readline().decode()).rstrip("\r\n") != ".":
                    lines.append(body)
                mail["data"] = "".join(lines)
                sink.append(mail)
                mail = {"to": [], "data": ""}
                self.wfile.write(b"250 ok\r\n")
            elif verb == "RCPT":
                mail["to"].append(cmd.split(":", 1)[1].strip(" <>"))
                self.wfile.write(b"250 ok\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@contextmanager
def sinks() -> Iterator[tuple[socketserver.ThreadingTCPServer, HTTPServer]]:
    smtp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    smtp.received, hook.received = [], []  # type: ignore[attr-defined]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (smtp, hook)]
    for t in threads:
        t.start()
    try:
        yield smtp, hook
    finally:
        smtp.shutdown()
        hook.shutdown()
        smtp.server_close()
        hook.server_close()
