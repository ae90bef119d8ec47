"""Timeline benchmark: the portal's device page for a device with 100,000 events, first page, on a real server.

Prints the first page's request time (loopback TLS to a real `vigil server` on SQLite: an upper bound of the server
time, target <= 300 ms) and, from the same run, the API's timeline of the same 101 rows as the baseline, so the
portal's own share (columns, alerts, incidents, rendering) is visible.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' real-server harness

from tests.support import VigilServer, enroll_raw, post_batch, process_event  # noqa: E402

TARGET_MS = 300
BATCH = 5_000


def _median_ms(c: httpx.Client, url: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = c.get(url)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        server = VigilServer.create(Path(tmp) / "server", "")
        server.start()
        try:
            pkg = server.onboarding_package(expires="1h")
            dev = enroll_raw(server, pkg["token"], hostname="timeline-bench.corp.example").json()
            now = datetime.now(UTC)
            for start in range(0, args.events, BATCH):
                events = [process_event(dev["device_id"], i + 1, DeviceName="timeline-bench.corp.example",
                                        Timestamp=(now - timedelta(seconds=20 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                                        ProcessCommandLine=f"/usr/bin/task --item {i}")
                          for i in range(start, min(start + BATCH, args.events))]
                r = post_batch(server, dev["credential"], events)
                assert r.status_code == 200, r.text
            with server.client() as c:
                c.get("/login")
                r = c.post("/login", data={"username": "admin", "password": server.admin_password,
                                           "csrf": c.cookies["vigil_csrf"]})
                assert r.status_code == 303, r.text
                page = f"/devices/{dev['device_id']}"
                first = c.get(page)  # warm, and check it is the real first page
                assert "/usr/bin/task --item 0<" in first.text and "Older" in first.text, first.text[:500]
                assert first.text.count("/usr/bin/task --item ") == 100
                portal = _median_ms(c, page, args.runs)
                with server.client(server.admin_token()) as api:
                    api.get(f"/api/machines/{dev['device_id']}/timeline?limit=101")
                    baseline = _median_ms(api, f"/api/machines/{dev['device_id']}/timeline?limit=101", args.runs)
        finally:
            server.stop()
    print(f"timeline of a device with {args.events:,} events, first page (100 rows), median of {args.runs}:")
    verdict = "met" if portal <= TARGET_MS else "MISSED"
    print(f"  portal device page     {portal:8.1f} ms  (target <= {TARGET_MS} ms: {verdict})")
    print(f"  API timeline, 101 rows {baseline:8.1f} ms  (same run baseline; portal/API {portal / baseline:.1f}x)")
    return 0 if portal <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
