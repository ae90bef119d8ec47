"""Export benchmark: records/s from Vigil's SIEM exporters to real receivers on loopback, beside a local file.

Every target gets the same N DeviceProcessEvents records (the ingest benchmark's realistic rows, in Defender's
streaming shape) in the stream worker's batches, through ``exporters.build(kind, ...).send`` exactly as a
destination loop calls it. The receivers (tests/integration/integrations/receivers.py) run in a child process of
their own, so their parsing does not share this process's GIL, and count what arrived by record id: a figure
counts only when every record arrived (UDP, which has no acknowledgement, reports what it lost instead).

The baseline is the ``file`` exporter writing the same records to a local JSON-lines file (fsync per batch), in
the same run. Prints a table, or one JSON object with --json: ``records_per_s`` per target and
``baseline_records_per_s``. Target: at least 20,000 records/s to the webhook and to syslog over TCP.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the receivers are the streaming tests' own

from bench.ingest import make_events  # noqa: E402

from vigil.integrations import exporters  # noqa: E402
from vigil.integrations.records import Record  # noqa: E402

BATCH = 5_000  # the stream worker's default batch_records
TARGET = 20_000
TARGETED = ("webhook", "syslog_cef_tcp", "syslog_leef_tcp")
CTX = exporters.Context(tenant_id="bench-tenant", hostname="vigil-bench", version="0.1.0")

# name → (exporter kind, receiver kind, settings beyond the receiver's address)
TARGETS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "webhook": ("webhook", "webhook", {"token": "bench"}),
    "splunk_hec": ("splunk_hec", "splunk_hec", {"token": "bench"}),
    "elasticsearch": ("elasticsearch", "elasticsearch", {"index": "vigil-bench"}),
    "syslog_cef_tcp": ("syslog", "syslog", {"format": "cef", "transport": "tcp"}),
    "syslog_leef_tcp": ("syslog", "syslog", {"format": "leef", "transport": "tcp"}),
    "syslog_cef_udp": ("syslog", "udp", {"format": "cef", "transport": "udp"}),
}


def make_records(n: int) -> list[Record]:
    out = []
    for seq, event in enumerate(make_events(n, "bench-device-0001"), start=1):
        table = event.pop("table")
        out.append(Record(f"{seq}.0", table, str(event["Timestamp"]), event))
    return out


def batches(records: Sequence[Record]) -> Iterator[Sequence[Record]]:
    for i in range(0, len(records), BATCH):
        yield records[i:i + BATCH]


# -- the receiver child: `bench/export.py --serve KIND` prints its port, then one count per line it reads ----------

def _udp_count(port_out: list[int]) -> Any:
    import socket
    import threading

    from tests.integration.integrations.receivers import RECORD_ID, Records

    records = Records()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("127.0.0.1", 0))
    port_out.append(s.getsockname()[1])

    def read() -> None:
        while True:
            data = s.recv(70_000)
            m = RECORD_ID.search(data)
            if m:
                records.add(m.group(1).decode(), data)

    threading.Thread(target=read, daemon=True).start()
    return records


def serve(kind: str) -> None:
    from tests.integration.integrations.receivers import HttpReceiver, SyslogReceiver

    if kind == "udp":
        port: list[int] = []
        records = _udp_count(port)
        print(port[0], flush=True)
    else:
        receiver: Any = SyslogReceiver() if kind == "syslog" else HttpReceiver(shape=kind)
        receiver.start()
        records = receiver.records
        print(receiver.port, flush=True)
    for _ in sys.stdin:
        with records.lock:
            answer = {"unique": len(records.copies), "copies": sum(records.copies.values()),
                      "conflicts": len(records.conflicts), "cpu": time.process_time()}
        print(json.dumps(answer), flush=True)


class Receiver:
    def __init__(self, kind: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def counts(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


# -- the sender -----------------------------------------------------------------------------------------------------

def send_all(kind: str, settings: dict[str, Any], records: Sequence[Record]) -> tuple[float, float]:
    """(wall, CPU) seconds to send every batch; raises ExportFailed as a destination loop would retry."""
    exporter = exporters.build(kind, settings, CTX)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches(records):
            exporter.send(batch)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        exporter.close()


def run_target(name: str, records: Sequence[Record]) -> dict[str, Any]:
    kind, receiver_kind, extra = TARGETS[name]
    receiver = Receiver(receiver_kind)
    try:
        if kind == "syslog":
            settings = {"host": "127.0.0.1", "port": receiver.port, **extra}
        else:
            settings = {"url": f"http://127.0.0.1:{receiver.port}/ingest", **extra}
        before = receiver.counts()["cpu"]
        wall, cpu = send_all(kind, settings, records)
        counts = receiver.counts()
        if receiver_kind == "udp":  # nothing acknowledges: give the reader a moment to drain its buffer
            time.sleep(1.0)
            counts = receiver.counts()
    finally:
        receiver.close()
    complete = counts["unique"] == len(records) and counts["conflicts"] == 0
    return {"records_per_s": round(len(records) / wall) if complete or receiver_kind == "udp" else 0,
            "cpu_records_per_s": round(len(records) / cpu) if cpu else None, "wall_s": round(wall, 3),
            "receiver_cpu_s": round(counts["cpu"] - before, 3), "received": counts["unique"],
            "copies": counts["copies"], "missing": len(records) - counts["unique"],
            "acknowledged": receiver_kind != "udp"}


def run_baseline(records: Sequence[Record]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-export-") as tmp:
        path = Path(tmp) / "export.jsonl"
        wall, cpu = send_all("file", {"path": str(path)}, records)
        with path.open("rb") as f:
            lines = sum(1 for _ in f)
    assert lines == len(records), f"the file has {lines} lines for {len(records)} records"
    return {"records_per_s": round(len(records) / wall), "cpu_records_per_s": round(len(records) / cpu),
            "wall_s": round(wall, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of: {', '.join(TARGETS)}")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        ap.error(f"--targets: unknown {', '.join(unknown)}; use {', '.join(TARGETS)}")
    if args.records < 1:
        ap.error("--records: at least 1")
    records = make_records(args.records)
    baseline = run_baseline(records)
    targets = {name: run_target(name, records) for name in names}
    met = all(targets[t]["records_per_s"] >= TARGET for t in TARGETED if t in targets)
    result = {"records": args.records, "batch": BATCH, "baseline_records_per_s": baseline["records_per_s"],
              "baseline": baseline, "records_per_s": {n: t["records_per_s"] for n, t in targets.items()},
              "targets": targets, "target_records_per_s": TARGET, "target_met": met}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.records:,} records in batches of {BATCH:,}")
    print(f"{'target':<18} {'records/s':>10} {'per core':>10} {'received':>9} {'vs file':>8}")
    print(f"{'file (baseline)':<18} {baseline['records_per_s']:>10,} {baseline['cpu_records_per_s']:>10,}")
    for name, t in targets.items():
        ratio = t["records_per_s"] / baseline["records_per_s"]
        print(f"{name:<18} {t['records_per_s']:>10,} {t['cpu_records_per_s'] or 0:>10,} {t['received']:>9,} "
              f"{ratio:>8.2f}")
    print(f"target ≥ {TARGET:,}/s to {', '.join(TARGETED)}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
