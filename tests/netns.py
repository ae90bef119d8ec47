"""A three-namespace lab (endpoint, management, other) joined by veths; the root namespace is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

MGMT_ADDR, OTHER_ADDR = "10.77.1.2", "10.77.2.2"
LISTENER = """
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(b"ok"); c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""
PROBE = """
import socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print(s.recv(2).decode())
except OSError as e:
    print(type(e).__name__); sys.exit(1)
"""


def require_netns() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (apt-get install iproute2 nftables)")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclass
class NetnsLab:
    ep: str
    mgmt: str
    other: str
    listeners: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, ns: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout,
                              check=False)

    def reachable(self, addr: str, port: int, timeout: float = 1.5) -> bool:
        done = self.run(self.ep, sys.executable, "-c", PROBE, addr, str(port), str(timeout))
        return done.returncode == 0 and done.stdout.strip() == "ok"

    def nft_tables(self) -> str:
        return self.run(self.ep, "nft", "list", "tables").stdout


@contextmanager
def netns_lab() -> Iterator[NetnsLab]:
    tag = uuid.uuid4().hex[:6]
    lab = NetnsLab(f"vgl_ep_{tag}", f"vgl_mg_{tag}", f"vgl_ot_{tag}")
    try:
        for ns in (lab.ep, lab.mgmt, lab.other):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        # Both ends are created inside the namespaces, so no interface ever appears in the root namespace.
        _ip("-n", lab.ep, "link", "add", "to_mg", "type", "veth", "peer", "name", "to_ep", "netns", lab.mgmt)
        _ip("-n", lab.ep, "link", "add", "to_ot", "type", "veth", "peer", "name", "to_ep", "netns", lab.other)
        for ns, dev, addr in ((lab.ep, "to_mg", "10.77.1.1/24"), (lab.mgmt, "to_ep", f"{MGMT_ADDR}/24"),
                              (lab.ep, "to_ot", "10.77.2.1/24"), (lab.other, "to_ep", f"{OTHER_ADDR}/24")):
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        for ns, ports in ((lab.mgmt, ("8443",)), (lab.other, ("8443", "80"))):
            p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, *ports],
                                 stdout=subprocess.PIPE)
            lab.listeners.append(p)
            assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 10
        while not (lab.reachable(MGMT_ADDR, 8443) and lab.reachable(OTHER_ADDR, 80)):
            assert time.monotonic() < deadline, "the netns lab did not come up"
            time.sleep(0.2)
        yield lab
    finally:
        for p in lab.listeners:
            p.kill()
            p.wait()
        for ns in (lab.ep, lab.mgmt, lab.other):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
