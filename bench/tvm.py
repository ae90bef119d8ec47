"""Benchmark TVM matching: a full bundle of every corpus in ../shared/data/vulns, devices of 2,000 packages.

Prints what issue 19 asks for: packages per device, advisories loaded, match time per device, the signed bundle's
import time, the baseline (the same inventory looked up in the same store, same run, without version logic:
the indexed lookup of each package's candidate advisories only) and the ratio of the two; plus the store build
and bundle times, findings per device and peak memory. Then the server memory phase (bench/tvm_memory.py):
--memory-devices devices (1,000) with these inventories in a real store, and the peak RSS of a fresh process
making the TVM reads over them (`server_memory_mib`, target 300).

Each device's inventory: this machine's own dpkg status (real Debian 12 packages, matched on source packages)
topped up to --packages with packages the feeds name (PyPI, Go, AlmaLinux, npm), each at a version drawn from
its advisories' own events (an introduced, fixed or last_affected version, or a made-up older or newer one), so
that ranges are walked, some match and some do not. Every device draws its own sample (seeded).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigil.content.tvm_feeds import build_store, import_bundle, open_store, tvm_dir, write_bundle
from vigil.tvm.feedstore import FeedStore
from vigil.tvm.inventory import read_dpkg_status
from vigil.tvm.model import Package
from vigil.wire import public_key_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tvm_memory  # the memory phase, beside this script

REPO = Path(__file__).resolve().parent.parent


def feed_packages(store: FeedStore) -> list[tuple[str, str, list[str]]]:
    """(ecosystem, name, versions its advisories' events name) for the non-Debian packages in the store."""
    versions: dict[tuple[str, str], set[str]] = {}
    rows = store.conn.execute(
        "SELECT f.ecosystem, f.name, a.doc FROM affected f JOIN advisory a ON a.id = f.advisory_id "
        "WHERE f.ecosystem NOT LIKE 'Debian:%'"
    )
    for ecosystem, name, doc in rows:
        got = versions.setdefault((ecosystem, name), set())
        for x in json.loads(doc)["affected"]:
            if x["package"]["ecosystem"] != ecosystem:
                continue
            for r in x.get("ranges", ()):
                if r["type"] != "GIT":
                    got.update(v for e in r["events"] for v in e.values() if v != "0")
    return [(e, n, sorted(v)) for (e, n), v in sorted(versions.items()) if v]


def device_inventory(rng: random.Random, base: list[Package], pool: list[tuple[str, str, list[str]]],
                     size: int) -> list[Package]:
    out = list(base[:size])
    for ecosystem, name, versions in rng.sample(pool, max(0, size - len(out))):
        v = rng.choice(versions)
        if rng.random() < 0.3 and ecosystem in ("PyPI", "Go", "npm"):  # a version no advisory names
            v = rng.choice(["0.0.1", "99.0.0"])
        out.append(Package(ecosystem, name, ("v" + v) if ecosystem == "Go" and rng.random() < 0.5 else v))
    return out


def baseline(store: FeedStore, packages: list[Package]) -> int:
    """The same lookups `scan` makes (one per source package or package), rows fetched, no version logic."""
    seen = {(p.ecosystem, p.match_name) for p in packages}
    return sum(len(store.candidate_rows(e, n)) for e, n in seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default, help="the shared third-party data folder")
    parser.add_argument("--packages", type=int, default=2000, help="packages per device")
    parser.add_argument("--devices", type=int, default=20, help="devices matched")
    parser.add_argument("--dpkg-status", type=Path, default=Path("/var/lib/dpkg/status"))
    parser.add_argument("--memory-devices", type=int, default=1000,
                        help="devices in the server memory phase (0: skip it)")
    parser.add_argument("--memory-vulnerabilities", action="store_true",
                        help="the memory phase also reads /api/vulnerabilities (every weakness row as a dict)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    vulns = args.data / "vulns"
    if not vulns.is_dir():
        print(f"bench/tvm.py: data not found under {args.data} (use --data)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = build_store(vulns, Path(tmp) / "built.sqlite")
        build_s = time.perf_counter() - t0
        key = Ed25519PrivateKey.generate()
        t0 = time.perf_counter()
        write_bundle(Path(tmp) / "built.sqlite", Path(tmp) / "feeds.zip", key, sequence=1)
        bundle_build_s = time.perf_counter() - t0
        data_dir = Path(tmp) / "data"
        t0 = time.perf_counter()
        import_bundle(Path(tmp) / "feeds.zip", data_dir, public_key_text(key))  # verify, digest, install
        bundle_import_s = time.perf_counter() - t0

        store = open_store(tvm_dir(data_dir) / "feeds.sqlite")
        advisories = store.advisory_count()
        base: list[Package] = []
        if args.dpkg_status.is_file():
            base = read_dpkg_status(args.dpkg_status.read_text(), str(args.dpkg_status), "12")
        pool = feed_packages(store)
        rng = random.Random(19)
        devices = [device_inventory(rng, base, pool, args.packages) for _ in range(args.devices)]

        # Rounds of matching then baseline, device by device, back to back (other work on the machine slows
        # both alike); per-device figures are medians.
        match_ms, base_ms, match_cpu, base_cpu, findings = [], [], [], [], []
        for inv in devices:
            t0, c0 = time.perf_counter(), time.process_time()
            found = store.scan(inv)
            match_ms.append((time.perf_counter() - t0) * 1000)
            match_cpu.append((time.process_time() - c0) * 1000)
            findings.append(len(found))
            t0, c0 = time.perf_counter(), time.process_time()
            baseline(store, inv)
            base_ms.append((time.perf_counter() - t0) * 1000)
            base_cpu.append((time.process_time() - c0) * 1000)
        size = (Path(tmp) / "feeds.zip").stat().st_size
        memory: dict[str, object] = {}
        if args.memory_devices > 0:
            store.conn.close()
            server_db = Path(tmp) / "server.sqlite"
            memory = tvm_memory.populate(server_db, data_dir, devices, args.memory_devices)
            child = subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "tvm_memory.py"),
                                    str(server_db), str(data_dir),
                                    *(["--vulnerabilities"] if args.memory_vulnerabilities else [])],
                                   capture_output=True, text=True, check=False)
            if child.returncode != 0:
                print(child.stderr, file=sys.stderr)
                return 1
            memory.update(json.loads(child.stdout))

    match = statistics.median(match_ms)
    lookup = statistics.median(base_ms)
    result = {
        "packages": args.packages,
        "advisories_loaded": advisories,
        "match_ms_per_device": round(match, 1),
        "bundle_import_s": round(bundle_import_s, 2),
        "baseline_ms": round(lookup, 1),
        "ratio": round(match / lookup, 1) if lookup else None,
        "match_cpu_ms_per_device": round(statistics.median(match_cpu), 1),  # CPU time: less hurt by a busy machine
        "baseline_cpu_ms": round(statistics.median(base_cpu), 1),
        "devices": args.devices,
        "dpkg_packages_per_device": min(len(base), args.packages),
        "findings_per_device": round(statistics.mean(findings), 1),
        "match_ms_first_device": round(match_ms[0], 1),
        "match_ms_max": round(max(match_ms), 1),
        "store_build_s": round(build_s, 2),
        "feed_files_with_errors": len(report.errors),
        "bundle_build_s": round(bundle_build_s, 2),
        "bundle_mib": round(size / 2**20, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **memory,
        "targets": {"match_ms_per_device": 300, "bundle_import_s": 30, "server_memory_mib": 300},
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>26}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
