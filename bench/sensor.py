"""Benchmark the Linux sensors: agent CPU per exec / file / connect event and RSS, against a no-agent baseline.

Each configuration runs the sensors in a child process writing to a real spool (no uploader), the
way the agent does; the workload runs in the parent. Agent CPU is the child's utime+stime over the
workload minus its idle rate; "missed" counts marker execs with no ProcessCreated row. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")

CONFIGS: dict[str, dict[str, Any]] = {
    "process (eBPF)": {"sensors": ["process"], "use_audit": False, "provider": "ebpf"},
    "process (proc connector + audit)": {"sensors": ["process"], "use_audit": True, "provider": "proc_connector"},
    "process (proc connector only)": {"sensors": ["process"], "use_audit": False, "provider": "proc_connector"},
    "file (fanotify)": {"sensors": ["file"], "use_audit": False},
    "network (eBPF)": {"sensors": ["network"], "use_audit": False, "network_provider": "ebpf"},
    "network (audit connect/accept)": {"sensors": ["network"], "use_audit": True, "network_provider": "audit"},
    "all sensors": {"sensors": ["process", "file", "network", "logon"], "use_audit": True},
}


# -- the agent side (child process) -----------------------------------------------------------

def _profile_threads() -> list[Any]:
    """cProfile every thread started from now on (cProfile sees only the thread that enables it)."""
    import cProfile

    profiles: list[cProfile.Profile] = []

    def start(*_: object) -> None:  # the first profile event in a new thread: hand over to cProfile
        sys.setprofile(None)
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()

    threading.setprofile(start)
    return profiles


def _print_profile(profiles: list[Any], top: int) -> None:
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(*profiles, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(out.getvalue(), file=sys.stderr, flush=True)


def child(spec: dict[str, Any]) -> int:
    profiles = _profile_threads() if spec.get("cprofile") else None
    import vigil.agent.runner  # noqa: F401  (what `vigil agent run` imports: transport, uploader, actions)
    from vigil.agent.budget import Budget, BudgetLimits, limit_heap_arenas
    from vigil.agent.clock import SystemClock
    from vigil.agent.config import AgentConfig
    from vigil.agent.sensors.base import SensorContext
    from vigil.agent.sensors.registry import default_registry
    from vigil.agent.spool import Spool

    limit_heap_arenas()  # as `vigil agent run` does before its threads start
    state = Path(spec["state_dir"])
    spool = Spool(state / "spool.db", SystemClock())
    # Rate limits off: the bench measures the cost of every event, not of shedding them.
    limits = BudgetLimits(cpu_percent=1e9, memory_mib=1e9, rate_limits=())
    config = AgentConfig(state_dir=state, use_audit=spec["use_audit"], file_paths=(spec["watch"], spec["warm"]),
                         budget=limits,
                         process_provider=spec.get("provider", "auto"),
                         network_provider=spec.get("network_provider", "auto"))
    budget = Budget(limits, losses=spool)
    budget.start()  # its sampler runs in the agent too (and hands freed heap back to the kernel)
    ctx = SensorContext(spool, SystemClock(), config, budget=budget)
    registry = default_registry()
    built = registry.build(ctx)
    sensors = {n: built[n] for n in spec["sensors"]}
    health = {n: str(s.start()) for n, s in sensors.items()}
    print(json.dumps({"ready": health}), flush=True)
    sys.stdin.readline()
    for s in sensors.values():
        s.stop()
    budget.stop()
    spool.flush()  # rows still grouped for their transaction; the counts below read the database
    if profiles:
        _print_profile(profiles, spec["cprofile"])
    marker = spec["marker"]

    def count(*needles: str) -> int:
        where = " AND ".join("CAST(body AS TEXT) LIKE ?" for _ in needles)  # bodies are JSON blobs
        return int(spool._db.execute(f"SELECT COUNT(*) FROM events WHERE {where}",
                                     [f"%{n}%" for n in needles]).fetchone()[0])

    created = count("ProcessCreated", f'"ProcessCommandLine":"/bin/true {marker}-')
    files = count("DeviceFileEvents", spec["watch"])
    nets = count("DeviceNetworkEvents", f'"RemotePort":{spec["port"]}')
    print(json.dumps({"created": created, "file_rows": files, "net_rows": nets, "rows": spool.depth(),
                      "counters": spool.counters().model_dump()}), flush=True)
    spool.close()
    return 0


# -- the workload side (parent) -----------------------------------------------------------------

def cpu_of(pid: int) -> float:
    """CPU seconds of the process's threads. The scheduler's nanosecond counts (schedstat) where they exist:
    utime+stime come in 10 ms ticks, a third of what 1,000 network events cost the agent."""
    total, found = 0, False
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
            found = True
        except (OSError, ValueError, IndexError):  # a thread that just ended, or no schedstat
            continue
    if found and total:
        return total / 1e9
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_of(pid: int) -> tuple[float, float]:
    """Current and peak resident set size, MiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values["VmRSS"], values["VmHWM"]


_LOOP = 'i=0; while [ $i -lt {n} ]; do /bin/true {marker}-{k}-$i; i=$((i+1)); done'


def spawn_execs(n: int, parallel: int, marker: str) -> tuple[float, float]:
    """n short processes from ``parallel`` shell loops (as fast as they go, like a build or a
    worm); returns (achieved execs per second, workload CPU per exec in µs, shells included)."""
    before = os.times()
    start = time.perf_counter()
    loops = [subprocess.Popen(["sh", "-c", _LOOP.format(n=n // parallel, marker=marker, k=k)])
             for k in range(parallel)]
    for p in loops:
        p.wait()
    wall = time.perf_counter() - start
    after = os.times()
    cpu = after.children_user + after.children_system - before.children_user - before.children_system
    total = n // parallel * parallel
    return total / wall, cpu / total * 1e6


def spool_rows(state: Path) -> int:
    """Rows the agent has written so far (read-only; the agent keeps writing)."""
    db = sqlite3.connect(f"file:{state / 'spool.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])
    finally:
        db.close()


def file_churn(directory: Path, n: int) -> float:
    """Create, write, rename and delete n files (4 events each); workload CPU per event, µs."""
    before = os.times()
    for i in range(n):
        p = directory / f"f{i}"
        with open(p, "w") as f:
            f.write("x")
        q = directory / f"g{i}"
        os.rename(p, q)
        os.unlink(q)
    after = os.times()
    return (after.user + after.system - before.user - before.system) / (3 * n) * 1e6


def warm_up(directory: Path) -> None:
    """A few file events and connections from this process, before anything is measured or counted (a
    directory and a listener of their own): the agent's first row from a process describes it, executable
    hash included, which is a cost per process, not per event."""
    file_churn(directory, 3)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        connects(listener.getsockname()[1], 3)
    time.sleep(0.5)  # the rows leave the sensors' attribution delays


def connects(port: int, n: int) -> None:
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port)):
            pass


def serve(sock: socket.socket, stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            c, _ = sock.accept()
            c.close()
        except TimeoutError:
            continue


def run_config(name: str, spec: dict[str, Any], args: argparse.Namespace, port: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        watch, warm = Path(tmp) / "watch", Path(tmp) / "warm"
        watch.mkdir()
        warm.mkdir()
        marker = f"bench{os.getpid()}x{abs(hash(name)) % 10000}"
        full = {**spec, "state_dir": str(Path(tmp) / "state"), "watch": str(watch), "warm": str(warm),
                "marker": marker, "port": port,
                "cprofile": args.cprofile}
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(full)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        health = json.loads(proc.stdout.readline())["ready"]
        spy = None
        if args.profile:  # sample the agent while the workload runs (py-spy needs root, as the bench does)
            args.profile.mkdir(parents=True, exist_ok=True)
            out_file = args.profile / (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") + ".txt")
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(proc.pid),
                                    "--format", "raw", "--rate", "250", "--gil", "--nonblocking", "-o", str(out_file)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        warm_up(warm)  # outside what is counted: the agent describes this process once, not per event
        time.sleep(0.5)
        idle0 = cpu_of(proc.pid)
        time.sleep(1.0)
        idle_rate = cpu_of(proc.pid) - idle0  # CPU seconds per second with nothing to do
        out: dict[str, Any] = {"config": name, "health": health, "rest_rss_mib": rss_of(proc.pid)[0]}
        state = Path(full["state_dir"])
        if "process" in spec["sensors"]:
            c0, t0, r0 = cpu_of(proc.pid), time.monotonic(), spool_rows(state)
            rate, work = spawn_execs(args.execs, args.parallel, marker)
            time.sleep(1.0)  # let the last audit records and exits arrive
            agent = cpu_of(proc.pid) - c0 - idle_rate * (time.monotonic() - t0)
            rows = spool_rows(state) - r0  # the whole machine's execs and exits, not only ours
            out.update(exec_rate=rate, workload_us_per_exec=work, agent_us_per_exec=agent / args.execs * 1e6,
                       rows_during_execs=rows, agent_us_per_row=agent / max(rows, 1) * 1e6)
        if "file" in spec["sensors"]:
            c0, t0 = cpu_of(proc.pid), time.monotonic()
            work = file_churn(watch, args.files)
            time.sleep(1.0)
            agent = cpu_of(proc.pid) - c0 - idle_rate * (time.monotonic() - t0)
            out.update(workload_us_per_file_event=work, agent_us_per_file_event=agent / (3 * args.files) * 1e6)
            if spec["sensors"] == ["file"]:
                out["file_rows_all"] = spool_rows(state)
        if "network" in spec["sensors"]:
            c0, t0 = cpu_of(proc.pid), time.monotonic()
            connects(port, args.connects)
            time.sleep(1.0)
            agent = cpu_of(proc.pid) - c0 - idle_rate * (time.monotonic() - t0)
            # Each connection is two events: the connect here and the accept in the listener thread.
            out.update(agent_us_per_net_event=agent / (2 * args.connects) * 1e6)
        out["rss_mib"], out["peak_rss_mib"] = rss_of(proc.pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        result = json.loads(proc.stdout.readline())
        proc.wait(30)
        if "process" in spec["sensors"]:
            out["missed_execs"] = args.execs - result["created"]
        if "file" in spec["sensors"]:
            out["file_rows"] = result["file_rows"]
        if "network" in spec["sensors"]:
            out["net_rows"] = result["net_rows"]
        out["dropped"] = result["counters"]["dropped"]
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--execs", type=int, default=3000)
    parser.add_argument("--parallel", type=int, default=4, help="shell loops spawning the execs")
    parser.add_argument("--files", type=int, default=3000, help="create+rename+delete cycles")
    parser.add_argument("--connects", type=int, default=3000,
                        help="TCP connections to a local listener (two events each)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--only", action="append", default=[],
                        help="run only configurations whose name contains this text (repeatable)")
    parser.add_argument("--profile", type=Path, help="write a py-spy raw profile of the agent per configuration here")
    parser.add_argument("--cprofile", type=int, metavar="N", default=0,
                        help="run the agent's threads under cProfile and print its top N functions by own time"
                             " (to stderr, per configuration; cProfile slows the agent, so its CPU figures are not"
                             " comparable)")
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if os.geteuid() != 0:
        print("bench/sensor.py: needs root (proc connector, audit, fanotify)", file=sys.stderr)
        return 2
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    port = listener.getsockname()[1]
    stop = threading.Event()
    server = threading.Thread(target=serve, args=(listener, stop), daemon=True)
    server.start()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vigil-bench-base-") as base:
        rate, work = spawn_execs(args.execs, args.parallel, "baseline")
        file_work = file_churn(Path(base), args.files)
        t0 = time.process_time()
        connects(port, args.connects)
        results.append({"config": "baseline (no agent)", "exec_rate": rate, "workload_us_per_exec": work,
                        "workload_us_per_file_event": file_work,
                        "workload_us_per_connect": (time.process_time() - t0) / args.connects * 1e6})
    for name, spec in CONFIGS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        results.append(run_config(name, spec, args, port))
    stop.set()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    keys = ["exec_rate", "workload_us_per_exec", "agent_us_per_exec", "rows_during_execs", "agent_us_per_row",
            "missed_execs", "workload_us_per_file_event",
            "agent_us_per_file_event", "file_rows", "file_rows_all", "agent_us_per_net_event", "net_rows",
            "rest_rss_mib", "rss_mib", "peak_rss_mib"]
    print(f"{args.execs} execs from {args.parallel} shell loops, {args.files} file cycles, {args.connects} connects")
    for r in results:
        print(f"\n== {r['config']}")
        for k in keys:
            if k in r:
                v = r[k]
                print(f"  {k:28} {v:10.1f}" if isinstance(v, float) else f"  {k:28} {v}")
        if r.get("dropped"):
            print(f"  {'dropped':28} {r['dropped']}")
        if "health" in r:
            print(f"  {'health':28} {r['health']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
