"""Streaming export to a NATS JetStream subject, end to end: a real server, a nats-server of the test's own on
loopback (down for a while, then back on the same store), a Vigil server restart, and a JetStream consumer that
gets every record exactly once by id."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support import VigilServer, enroll_raw, free_port, post_batch, process_event

BATCH = 40
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def _wait(cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


class NatsServer:
    def __init__(self, store: Path) -> None:
        self.port, self.store = free_port(), store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js",
                                      "-sd", str(self.store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: asyncio.run(self._ping()), timeout=20)

    async def _ping(self) -> bool:
        import nats

        try:
            nc = await nats.connect(self.url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0)
        except Exception:
            return False
        await nc.close()
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None

    def messages(self, stream: str) -> list[dict[str, Any]]:
        """Every message the stream holds (an ordered consumer from the start), with its Nats-Msg-Id."""
        async def read() -> list[dict[str, Any]]:
            import nats

            nc = await nats.connect(self.url)
            js = nc.jetstream()
            total = (await js.stream_info(stream)).state.messages
            sub = await js.pull_subscribe("", durable=None, stream=stream)
            out: list[dict[str, Any]] = []
            while len(out) < total:
                for m in await sub.fetch(min(500, total - len(out)), timeout=5):
                    out.append({"id": (m.headers or {}).get("Nats-Msg-Id"), **json.loads(m.data)})
                    await m.ack()
            await nc.close()
            return out

        return asyncio.run(read())


@pytest.mark.skipif(not Path(NATS_SERVER).exists(), reason="nats-server is not installed")
def test_jetstream_subject_gets_every_record_once_across_nats_downtime_and_a_server_restart(
        sqlite_server: VigilServer, tmp_path: Path) -> None:
    server, nats_server = sqlite_server, NatsServer(tmp_path / "nats")
    nats_server.start()
    admin = server.admin_token()
    try:
        with server.client(admin) as c:
            bad = c.post("/api/streaming/destinations", json={
                "name": "js", "type": "nats", "tables": ["DeviceProcessEvents"],
                "settings": {"url": "http://127.0.0.1:4222"}})
            assert bad.status_code == 422 and bad.json()["field"] == "settings.url"
            bad = c.post("/api/streaming/destinations", json={
                "name": "js", "type": "nats", "tables": ["DeviceProcessEvents"],
                "settings": {"url": nats_server.url, "subject": "vigil.>"}})
            assert bad.status_code == 422 and bad.json()["field"] == "settings.subject"
            r = c.post("/api/streaming/destinations", json={
                "name": "js", "type": "nats", "tables": ["DeviceProcessEvents"],
                "settings": {"url": nats_server.url, "subject": "siem.vigil", "stream": "VIGIL_EXPORT",
                             "timeout": 2}})
            assert r.status_code == 201, r.text

        def status() -> dict[str, Any]:
            with server.client(admin) as c:
                return dict(c.get("/api/streaming/destinations").json()["value"][0])

        dev = enroll_raw(server, server.onboarding_package()["token"], "web-01").json()
        seq = 0

        def send(batches: int) -> None:
            nonlocal seq
            for _ in range(batches):
                events = [process_event(dev["device_id"], seq + i) for i in range(BATCH)]
                seq += BATCH
                assert post_batch(server, dev["credential"], events).status_code == 200

        send(3)
        _wait(lambda: status()["recordsSent"] == seq)

        # NATS down: records queue with the error shown; the Vigil server restarts meanwhile.
        nats_server.stop()
        send(3)
        _wait(lambda: status()["lastError"] is not None and status()["lag"] > 0)
        assert "NATS" in status()["lastError"]
        server.stop()
        server.start()
        send(2)
        nats_server.start()  # back on the same store: what it had is still there
        _wait(lambda: status()["lag"] == 0 and status()["recordsSent"] == seq, timeout=120)

        got = nats_server.messages("VIGIL_EXPORT")
        ids = Counter(m["id"] for m in got)
        assert [i for i, n in ids.items() if n > 1] == []  # a resent id is stored once
        assert all(m["id"] == m["recordId"] for m in got)
        assert sorted(m["properties"]["ReportId"] for m in got) == list(range(seq))  # none missing
        assert {m["category"] for m in got} == {"AdvancedHunting-DeviceProcessEvents"}
        assert status()["attempts"] == 0
    finally:
        nats_server.stop()
