"""The memory phase of bench/tvm.py: the server's TVM reads over 1,000 devices' inventories and weaknesses.

`populate` fills a real SQLite store (migrated by Alembic) through the server's own store functions: each device's
inventory applied as the agent's full SoftwareInventory row is (`apply_inventory`), and its weaknesses written as
`TvmService.recompute` writes them — matched once per distinct inventory (the fleet repeats a few inventories, so
the phase takes minutes, not hours; matching time is the other phase's figure). `measure` runs in a fresh process,
as a server would: the reads the API and portal make (exposure score and history, recommendations, software,
device scores, secure score; the vulnerability list when asked) and the peak RSS (VmHWM) after them, beside the
RSS of the same process before the reads.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigil.tvm.model import Package


def _status_mib(key: str) -> float:
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's peak.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no {key} in /proc/self/status")


def _rss_mib() -> float:
    return _status_mib("VmHWM")


def _current_rss_mib() -> float:
    return _status_mib("VmRSS")


def populate(db_path: Path, data_dir: Path, inventories: list[list[Package]], devices: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from vigil.app.stores import sql_store
    from vigil.app.tvm import TvmService
    from vigil.core.clock import SystemClock
    from vigil.store import db
    from vigil.store import tvm as tvm_db
    from vigil.store.devices import ensure_default_group
    from vigil.store.schema import devices as devices_table
    from vigil.tvm import posture
    from vigil.tvm.purls import inventory_parts, to_purl

    engine = db.make_engine(f"sqlite:///{db_path}")
    db.upgrade(engine)
    svc = TvmService(sql_store(engine), data_dir, SystemClock())
    feed = svc.feed()
    assert feed is not None, "no feed bundle imported in the data dir"
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    templates: dict[int, list[dict[str, Any]]] = {}
    inventory_rows = weakness_rows = 0
    with engine.begin() as conn:
        group = ensure_default_group(conn, now)
    for i in range(devices):
        device_id = f"{i:040x}"
        k = i % len(inventories)
        purls = sorted({to_purl(p) for p in inventories[k]})
        with engine.begin() as conn:
            conn.execute(devices_table.insert().values(
                id=device_id, computer_dns_name=f"host-{i:04d}.example.test", os_platform="Linux", os_version="12",
                agent_version="bench", machine_id="", group_id=group, tags=[], agent_tags=[], credential_hash="-",
                first_seen=now, last_seen=now, counters={}, sensors={}))
            for part in inventory_parts("bench", 1, None, purls, []):
                out = tvm_db.apply_inventory(conn, device_id, part, now)
                assert out.applied, out.problem
            packages = tvm_db.device_packages(conn, device_id)
            if k not in templates:  # as recompute does, once per distinct inventory
                findings = feed.store.scan([p for _, p in packages], [])
                templates[k] = posture.device_weaknesses(packages, findings, svc._cvss(feed), "normal",
                                                         feed.store.in_kev, svc._epss(feed))
            tvm_db.replace_weaknesses(conn, device_id, templates[k], feed.sequence, now)
        inventory_rows += len(packages)
        weakness_rows += len(templates[k])
    with engine.connect() as conn:
        stored = conn.execute(sa.text('SELECT count(*) FROM "DeviceTvmSoftwareInventory"')).scalar()
    engine.dispose()
    return {"memory_devices": devices, "memory_inventory_rows": stored, "memory_weakness_rows": weakness_rows,
            "memory_populate_s": round(time.perf_counter() - t0, 1), "memory_db_mib": round(
                db_path.stat().st_size / 2**20, 1), "memory_distinct_inventories": len(templates),
            "memory_inventory_rows_applied": inventory_rows}


def measure(db_path: Path, data_dir: Path, vulnerabilities: bool = False) -> dict[str, Any]:
    """In a fresh process: the server's TVM reads over the whole store, as an administrator sees it."""
    from vigil.app.principal import Principal
    from vigil.app.stores import sql_store
    from vigil.app.tvm import TvmService
    from vigil.core.clock import SystemClock
    from vigil.core.rbac import Permission
    from vigil.store import db

    engine = db.make_engine(f"sqlite:///{db_path}")
    svc = TvmService(sql_store(engine), data_dir, SystemClock())
    admin = Principal("bench", frozenset(Permission), None, is_admin=True)
    svc.feed()
    before = _current_rss_mib()
    times: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for name, read in (("exposureScore", svc.exposure_score), ("recommendations", svc.recommendations),
                       ("Software", svc.software), ("deviceScores", svc.device_scores),
                       ("exposureHistory", svc.exposure_history), ("configurationScore",
                                                                    svc.configuration.configuration_score)):
        t0 = time.perf_counter()
        got = read(admin)
        times[name] = round(time.perf_counter() - t0, 2)
        sizes[name] = len(got) if isinstance(got, list | dict) else 0
    out: dict[str, Any] = {"server_rss_before_reads_mib": before, "server_memory_mib": _rss_mib(),
                           "memory_read_s": times, "memory_read_sizes": sizes}
    if vulnerabilities:  # builds one dict per weakness row: grows with the fleet's weaknesses
        t0 = time.perf_counter()
        sizes["vulnerabilities"] = len(svc.vulnerabilities(admin))
        times["vulnerabilities"] = round(time.perf_counter() - t0, 2)
        out["server_memory_with_vulnerabilities_mib"] = _rss_mib()
    return out


if __name__ == "__main__":  # the measuring child: bench/tvm_memory.py DB DATA_DIR [--vulnerabilities]
    print(json.dumps(measure(Path(sys.argv[1]), Path(sys.argv[2]), "--vulnerabilities" in sys.argv[3:])))
