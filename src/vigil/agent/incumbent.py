"""The incumbent antivirus/EDR on this device: what the agent can see of other security products.

Most organisations already run an antivirus, often an EDR, when Vigil arrives. The agent looks for them in
``/proc``: processes of known products (ClamAV's ``clamd`` and ``freshclam``, and other vendors' daemons
below), and any other process holding a fanotify group (the interface on-access scanners use) or eBPF
programs. It reports what it found as one line in its health map, ``incumbent_security``, which the server
shows per device; it is not a sensor and does not make the sensor unhealthy.

What it cannot see: products that hide from ``/proc``, kernel modules without a user-space daemon, and
processes of other users when the agent runs without privileges (their ``fd`` links are not readable).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vigil.core.sensor_health import INCUMBENT_KEY as HEALTH_KEY

__all__ = ["HEALTH_KEY", "Finding", "IncumbentProbe", "describe", "detect"]
NONE_DETECTED = "none detected"
REFRESH_SECONDS = 600.0

# Process name (as /proc/<pid>/comm shows it, at most 15 characters) -> product.
KNOWN_PROCESSES: dict[str, str] = {
    "clamd": "ClamAV",
    "freshclam": "ClamAV",
    "clamonacc": "ClamAV",
    "wdavdaemon": "Microsoft Defender for Endpoint",
    "mdatp_audisp_pl": "Microsoft Defender for Endpoint",
    "falcon-sensor": "CrowdStrike Falcon",
    "falcond": "CrowdStrike Falcon",
    "sentinelone-age": "SentinelOne",
    "s1-agent": "SentinelOne",
    "savd": "Sophos",
    "sophos-spl": "Sophos",
    "soapd": "Sophos",
    "esets_daemon": "ESET",
    "oaeventd": "ESET",
    "ds_agent": "Trend Micro Deep Security",
    "cbagentd": "VMware Carbon Black",
    "cbdaemon": "VMware Carbon Black",
    "xagt": "Trellix (FireEye) HX",
    "mfetpd": "Trellix (McAfee) Endpoint Security",
    "elastic-endpoin": "Elastic Defend",  # elastic-endpoint, as comm truncates it
    "kesl": "Kaspersky Endpoint Security",
    "bdsecd": "Bitdefender GravityZone",
    "cylancesvc": "BlackBerry Cylance",
}


@dataclass(frozen=True)
class Finding:
    product: str  # a known product, or "unknown" for an unnamed fanotify/eBPF user
    process: str
    pid: int
    how: str  # "process", "fanotify", "ebpf"

    def __str__(self) -> str:
        via = "" if self.how == "process" else f", holds {self.how}"
        return f"{self.product} ({self.process} pid {self.pid}{via})"


def _comm(pid_dir: Path) -> str:
    try:
        return (pid_dir / "comm").read_text().strip()
    except OSError:
        return ""


def _fd_kinds(pid_dir: Path) -> set[str]:
    """Which of fanotify / eBPF the process holds, from its fd links (readable for our own user or as root)."""
    kinds: set[str] = set()
    try:
        fds = os.listdir(pid_dir / "fd")
    except OSError:
        return kinds
    for fd in fds:
        try:
            target = os.readlink(pid_dir / "fd" / fd)
        except OSError:
            continue
        if target == "anon_inode:[fanotify]":
            kinds.add("fanotify")
        elif target.startswith("anon_inode:bpf-prog"):
            kinds.add("ebpf")
    return kinds


def detect(proc: Path = Path("/proc"), self_pid: int | None = None) -> list[Finding]:
    """Security products visible in ``proc`` (a /proc-like tree), the agent's own process excluded."""
    me = os.getpid() if self_pid is None else self_pid
    found: list[Finding] = []
    try:
        entries = sorted(int(e) for e in os.listdir(proc) if e.isdigit())
    except OSError:
        return found
    for pid in entries:
        if pid == me:
            continue
        d = proc / str(pid)
        name = _comm(d)
        if not name or name.startswith("vigil"):
            continue
        product = KNOWN_PROCESSES.get(name)
        kinds = _fd_kinds(d)
        if product is not None:
            found.append(Finding(product, name, pid, "process"))
        for how in sorted(kinds):
            if product is None:
                found.append(Finding("unknown", name, pid, how))
    return found


def describe(findings: list[Finding]) -> str:
    if not findings:
        return NONE_DETECTED
    products = sorted({f.product for f in findings if f.product != "unknown"})
    head = f"detected: {', '.join(products)}" if products else "detected: unknown security software"
    return head + "; " + "; ".join(str(f) for f in findings[:20])


class IncumbentProbe:
    """``describe`` for the health map, re-scanned at most every ``REFRESH_SECONDS``."""

    def __init__(self, proc: Path = Path("/proc"), monotonic: Callable[[], float] = time.monotonic) -> None:
        self._proc, self._monotonic = proc, monotonic
        self._at: float | None = None
        self._text = NONE_DETECTED

    def describe(self) -> str:
        now = self._monotonic()
        if self._at is None or now - self._at >= REFRESH_SECONDS:
            self._text, self._at = describe(detect(self._proc)), now
        return self._text
