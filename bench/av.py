"""Benchmark the antivirus: first scan and rescan of a generated >= 1 GB mixed corpus, against Debian's clamscan.

Definitions: every rule YARA-X compiles from ../shared/data/yara/signature-base and ../shared/data/yara/reversinglabs
(the count it refuses printed) plus a 100,000-entry SHA-256 list, built into a signed bundle and loaded as an agent
loads it. Baseline, same run, same corpus: `clamscan` with the same hashes as a .hsb database and the YARA files
ClamAV accepts (it refuses a whole database for one rule it cannot parse, so files are tried in halving groups).
The corpus is written under /tmp and removed afterwards. Prints a table, or one JSON object with --json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigil.av import bundle
from vigil.av.engine import Engine
from vigil.av.scan import ScanType, run_scan

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the tests' fixture builders: EICAR assembled at run time, archives
from tests.unit.av.av_support import eicar, tar_gz_of, zip_of  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "yara"
RULE_SETS = ("signature-base", "reversinglabs")
WORDS = ["error", "warning", "info", "connection", "user", "session", "request", "response", "timeout", "kernel",
         "process", "file", "socket", "config", "value", "start", "stop", "open", "close", "read", "write"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _text(rng: random.Random, size: int) -> bytes:
    out = io.StringIO()
    n = 0
    while n < size:
        line = f"2026-12-0{rng.randint(1, 7)}T{rng.randint(0, 23):02}:{rng.randint(0, 59):02} " + " ".join(
            rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + f" id={rng.getrandbits(32)}\n"
        out.write(line)
        n += len(line)
    return out.getvalue().encode()[:size]


def make_corpus(root: Path, target: int, seed: int = 20) -> tuple[int, int, list[Path]]:
    """Mixed files (real ELF programs and libraries, text, random blobs, archives, JSON, many small files) of
    ``target`` bytes at least; returns (files, bytes, files planted for the hash list)."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    files = size = 0

    def put(rel: str, data: bytes) -> Path:
        nonlocal files, size
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        files += 1
        size += len(data)
        return p

    elf_budget = target * 35 // 100
    sources = [p for d in ("/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu") for p in sorted(Path(d).glob("*"))]
    rng.shuffle(sources)
    copied = 0
    for src in sources:
        if copied >= elf_budget:
            break
        try:
            if not src.is_file() or src.is_symlink() or not 4096 < src.stat().st_size < 40 << 20:
                continue
            data = src.read_bytes()
        except OSError:
            continue
        if data[:4] != b"\x7fELF":
            continue
        put(f"elf/{copied % 97}/{src.name}", data)
        copied += len(data)
    text_budget = size + target * 25 // 100
    i = 0
    while size < text_budget:
        put(f"text/{i % 50}/log{i}.txt", _text(rng, rng.choice((4096, 65536, 500_000, 2_000_000))))
        i += 1
    blob_budget = size + target * 15 // 100
    i = 0
    while size < blob_budget:
        put(f"blob/{i % 20}/data{i}.bin", rng.randbytes(rng.choice((65536, 1 << 20, 4 << 20))))
        i += 1
    arch_budget = size + target * 10 // 100
    i = 0
    while size < arch_budget:
        members = {f"doc{j}.txt": _text(rng, 200_000) for j in range(10)}
        if i % 2:
            put(f"archives/a{i}.zip", zip_of(members))
        else:
            put(f"archives/a{i}.tar.gz", tar_gz_of(members))
        i += 1
    i = 0
    while size < target:
        if i % 3 == 0:
            put(f"json/{i % 100}/doc{i}.json", json.dumps({"id": i, "values": [rng.random() for _ in range(300)]})
                .encode())
        else:
            put(f"small/{i % 200}/f{i}.cfg", _text(rng, rng.randint(200, 8000)))
        i += 1
    put("planted/eicar.com", eicar())
    put("planted/eicar.zip", zip_of({"inside/eicar.txt": eicar()}))
    listed = [put(f"planted/listed{j}.bin", rng.randbytes(10_000 + j)) for j in range(5)]
    return files, size, listed


def hash_lists(folder: Path, listed: list[Path], n: int, seed: int = 7) -> tuple[Path, Path]:
    """The same hashes twice: Vigil's list (HEX NAME) and ClamAV's .hsb (HEX:SIZE:NAME)."""
    rng = random.Random(seed)
    rows = [(hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, f"Listed{j}") for j, p in enumerate(listed)]
    rows += [(rng.randbytes(32).hex(), rng.randint(1000, 10_000_000), f"Random{j}") for j in range(n - len(rows))]
    vigil, clam = folder / "hashes.txt", folder / "hashes.hsb"
    vigil.write_text("".join(f"{h} Trojan:Linux/{name}\n" for h, _, name in rows))
    clam.write_text("".join(f"{h}:{size}:Vigil.Bench.{name}\n" for h, size, name in rows))
    return vigil, clam


def _clam_loads(db: Path, probe: Path) -> bool:
    r = subprocess.run(["clamscan", "--no-summary", "--quiet", "-d", str(db), str(probe)], capture_output=True,
                       check=False, timeout=600)
    return r.returncode in (0, 1)


def clam_yara(files: list[Path], work: Path, probe: Path) -> list[Path]:
    """The YARA files ClamAV loads, found by halving: a group that loads is kept whole."""
    accepted: list[Path] = []
    stack = [files]
    n = 0
    while stack:
        group = stack.pop()
        d = work / f"try{n}"
        n += 1
        d.mkdir()
        for i, f in enumerate(group):
            shutil.copy(f, d / f"{i}_{f.name}")
        ok = _clam_loads(d, probe)
        shutil.rmtree(d)
        if ok:
            accepted.extend(group)
        elif len(group) > 1:
            stack += [group[: len(group) // 2], group[len(group) // 2:]]
    return accepted


def run_clamscan(db: Path, corpus: Path, empty: Path) -> tuple[float, float, str]:
    """(scan seconds without database load, load seconds, summary)."""
    cmd = ["clamscan", "-r", "-d", str(db), "--max-filesize=200M", "--max-scansize=800M", "--bytecode=no"]
    t = time.monotonic()
    subprocess.run([*cmd, str(empty)], capture_output=True, check=False)
    load = time.monotonic() - t
    t = time.monotonic()
    r = subprocess.run([*cmd, "--infected", str(corpus)], capture_output=True, text=True, check=False)
    total = time.monotonic() - t
    if r.returncode not in (0, 1):
        raise RuntimeError(f"clamscan failed ({r.returncode}): {r.stderr[-2000:]}")
    return max(total - load, 1e-9), load, r.stdout


_RSS_PROBE = """
import sys
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from vigil.av import bundle
from vigil.av.engine import Engine
key = load_pem_public_key(Path(sys.argv[2]).read_bytes())
engine = Engine(bundle.read_bundle(Path(sys.argv[1]).read_bytes(), [key]))
assert not engine.scan_file(sys.argv[3])[0].clean
# VmHWM, the peak of this process's own memory: ru_maxrss would report the benchmark's peak, since Linux copies
# the parent's high-water mark into a child at fork and exec does not reset it.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def _rss_with_bundle(work: Path, data: bytes, key: Ed25519PrivateKey, sample: Path) -> float:
    """Peak RSS (MiB) of a fresh process that loads the bundle, as an agent does, and scans one file."""
    from cryptography.hazmat.primitives import serialization

    (work / "defs.vab").write_bytes(data)
    (work / "defs.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    r = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(work / "defs.vab"), str(work / "defs.pub"),
                        str(sample)], capture_output=True, text=True, check=True)
    return round(int(r.stdout.strip()) / 1024, 1)


_OPENS = """
import os, sys, time
path, n = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
for _ in range(n):
    os.close(os.open(path, os.O_RDONLY))
print((time.perf_counter() - t) / n * 1e6)
"""


def rtp_us_per_open(engine: Engine, work: Path, opens: int = 20_000) -> tuple[float | None, str]:
    """Extra microseconds per open of a cached clean file under real-time protection with FAN_OPEN_PERM (every
    open waits for Vigil's answer), measured in a child process on a tmpfs, against the same opens unwatched."""
    if os.geteuid() != 0:
        return None, "needs root (fanotify permission events, mounting a tmpfs)"
    from vigil.agent.antivirus import Mode, RealTimeHook
    from vigil.agent.clock import SystemClock
    from vigil.agent.fanotify import AccessGate, GateSettings

    mnt = work / "rtp"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=False).returncode:
        return None, "could not mount a tmpfs"
    try:
        clean = mnt / "clean.txt"
        clean.write_bytes(b"an ordinary document\n" * 200)

        def run() -> float:
            out = subprocess.run([sys.executable, "-c", _OPENS, str(clean), str(opens)], capture_output=True,
                                 text=True, check=True)
            return float(out.stdout)

        bare = min(run() for _ in range(3))
        hook = RealTimeHook(engine, Mode.BLOCK, _NullSink(), SystemClock(), None)
        gate = AccessGate(GateSettings(marks=(str(mnt),), open_perm=True, close_write=False), [hook])
        gate.start()
        try:
            watched = min(run() for _ in range(3))
            failed = gate.counters.failed_open
        finally:
            gate.stop()
            hook.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    return round(watched - bare, 1), (f"FAN_OPEN_PERM on a tmpfs, cached clean file: {watched:.1f} us per open "
                                      f"watched, {bare:.1f} unwatched, {failed} failed open")


class _NullSink:
    def append(self, rows: object) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--size-mb", type=int, default=1100, help="corpus size (at least 1,000 for the issue's figure)")
    ap.add_argument("--hashes", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-baseline", action="store_true", help="skip clamscan")
    ap.add_argument("--data", type=Path, default=DATA, help="folder holding signature-base/ and reversinglabs/")
    ap.add_argument("--rtp-only", action="store_true", help="only the real-time protection figure (built-in "
                    "definitions; the opens hit the verdict cache, so the rule set does not change it)")
    args = ap.parse_args()
    if args.rtp_only:
        from vigil.av.definitions import builtin

        work = Path(tempfile.mkdtemp(prefix="vigil-av-bench-", dir="/tmp"))
        try:
            us, why = rtp_us_per_open(Engine(builtin()), work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps({"rtp_us_per_open": us, "rtp_reason": why}, indent=2) if args.json else f"{us} us ({why})")
        return
    if not args.no_baseline and shutil.which("clamscan") is None:
        log("clamscan missing: apt-get install -y clamav")
        subprocess.run(["apt-get", "install", "-y", "-qq", "clamav"], check=True, env={**os.environ,
                       "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)
    rule_dirs = [args.data / name / "yara" for name in RULE_SETS]
    for d in rule_dirs:
        if not d.is_dir():
            sys.exit(f"{d} is missing: the benchmark needs the YARA corpora in ../shared/data/yara")
    work = Path(tempfile.mkdtemp(prefix="vigil-av-bench-", dir="/tmp"))
    try:
        result = _run(args, rule_dirs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _table(result)


def _run(args: argparse.Namespace, rule_dirs: list[Path], work: Path) -> dict[str, object]:
    log(f"generating a {args.size_mb} MB corpus in {work} ...")
    t = time.monotonic()
    files, size, listed = make_corpus(work / "corpus", args.size_mb * 1_000_000)
    gen_s = time.monotonic() - t
    vigil_hashes, clam_hashes = hash_lists(work, listed, args.hashes)

    log("building the definition bundle (YARA-X compile, hashes, sign) ...")
    key = Ed25519PrivateKey.generate()
    t = time.monotonic()
    data, report = bundle.build(key, yara_paths=rule_dirs, hash_lists=[vigil_hashes], version=1)
    build_s = time.monotonic() - t
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.monotonic()
    definitions = bundle.read_bundle(data, [key.public_key()])
    load_s = time.monotonic() - t
    engine = Engine(definitions)
    agent_rss = _rss_with_bundle(work, data, key, listed[0])
    log(f"YARA-X: {report.yara.rules} rules compiled from {report.yara.files} files, {report.yara.refused} refused")

    log(f"Vigil first scan ({args.workers} threads) ...")
    t = time.monotonic()
    first = run_scan(engine, ScanType.CUSTOM, [str(work / "corpus")], workers=args.workers)
    first_s = time.monotonic() - t
    t = time.monotonic()
    rescan = run_scan(engine, ScanType.CUSTOM, [str(work / "corpus")], workers=args.workers)
    rescan_s = time.monotonic() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rtp = rtp_us_per_open(engine, work)
    mb = size / 1e6
    found = sorted({d.location.removeprefix(str(work / "corpus") + "/") + " " + d.threat.name
                    for d in first.detections})
    result: dict[str, object] = {
        "corpus_files": files, "corpus_mb": round(mb, 1), "corpus_generate_s": round(gen_s, 1),
        "yara_files": report.yara.files, "yara_rules": report.yara.rules, "yara_refused": report.yara.refused,
        "hash_entries": args.hashes, "bundle_mb": round(len(data) / 1e6, 1), "bundle_build_s": round(build_s, 1),
        "bundle_load_s": round(load_s, 2), "workers": args.workers,
        "first_s": round(first_s, 2), "rescan_s": round(rescan_s, 3),
        "mb_per_s_first": round(mb / first_s, 1), "mb_per_s_rescan": round(mb / rescan_s, 1),
        "files_per_s_first": round(first.files / first_s, 1), "files_per_s_rescan": round(rescan.files / rescan_s, 1),
        "rescan_cached": rescan.cached,
        "rtp_us_per_open": rtp[0], "rtp_reason": rtp[1],
        "agent_rss_mib_with_bundle": agent_rss,
        "bench_rss_mib_peak": round(rss / 1024, 1), "bench_rss_mib_before_load": round(rss_before / 1024, 1),
        "vigil_detections": found, "vigil_incomplete": len(first.incomplete), "vigil_errors": len(first.errors),
    }
    if args.no_baseline:
        result.update(baseline_mb_per_s=None, ratio_first=None, ratio_rescan=None)
        return result
    log("finding the YARA files ClamAV accepts ...")
    clam_db = work / "clamdb"
    clam_db.mkdir()
    probe = work / "probe.txt"
    probe.write_text("probe")
    yara_files = [p for d in rule_dirs for p in sorted(d.rglob("*")) if p.suffix in (".yar", ".yara")]
    t = time.monotonic()
    accepted = clam_yara(yara_files, work, probe)
    for i, f in enumerate(accepted):
        shutil.copy(f, clam_db / f"{i}_{f.name}")
    shutil.copy(clam_hashes, clam_db / "vigil.hsb")
    if not _clam_loads(clam_db, probe):  # accepted groups may still clash together: keep the hashes only
        for f in clam_db.glob("*.yar*"):
            f.unlink()
        accepted = []
    log(f"ClamAV accepts {len(accepted)} of {len(yara_files)} YARA files ({time.monotonic() - t:.0f} s to find)")
    empty = work / "empty"
    empty.mkdir()
    log("clamscan ...")
    clam_s, clam_load, clam_out = run_clamscan(clam_db, work / "corpus", empty)
    base = mb / clam_s
    result.update({
        "baseline": "Debian clamscan " + subprocess.run(["clamscan", "--version"], capture_output=True, text=True,
                                                        check=False).stdout.strip(),
        "baseline_yara_files": len(accepted), "baseline_load_s": round(clam_load, 1), "baseline_s": round(clam_s, 2),
        "baseline_mb_per_s": round(base, 1),
        "baseline_detections": sorted(line.split(": ", 1)[-1] for line in clam_out.splitlines()
                                      if line.endswith("FOUND")),
        "ratio_first": round(mb / first_s / base, 2), "ratio_rescan": round(mb / rescan_s / base, 2),
    })
    return result


def _table(r: dict[str, object]) -> None:
    rows = [("corpus", f"{r['corpus_files']} files, {r['corpus_mb']} MB"),
            ("YARA-X rules", f"{r['yara_rules']} compiled, {r['yara_refused']} refused"),
            ("hash list", f"{r['hash_entries']} SHA-256"),
            ("bundle", f"{r['bundle_mb']} MB, built in {r['bundle_build_s']} s, loaded in {r['bundle_load_s']} s"),
            ("Vigil first scan", f"{r['mb_per_s_first']} MB/s, {r['files_per_s_first']} files/s "
                                 f"({r['workers']} threads)"),
            ("Vigil rescan", f"{r['mb_per_s_rescan']} MB/s ({r['rescan_cached']} cached)"),
            ("RTP per open", f"{r['rtp_us_per_open']} ({r['rtp_reason']})"),
            ("baseline clamscan", f"{r.get('baseline_mb_per_s')} MB/s "
                                  f"({r.get('baseline_yara_files')} YARA files, 1 thread)"),
            ("ratio first / rescan", f"{r.get('ratio_first')} / {r.get('ratio_rescan')}"),
            ("agent RSS with bundle", f"{r['agent_rss_mib_with_bundle']} MiB (fresh process: load, verify, scan)"),
            ("Vigil found", "; ".join(r["vigil_detections"])),  # type: ignore[arg-type]
            ("clamscan found", "; ".join(r.get("baseline_detections", []))),  # type: ignore[arg-type]
            ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
