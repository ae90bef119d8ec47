"""An enrolled agent's real software inventory (its sensor reading a fixture host the test writes) reaches a real
server, and the weaknesses found in it appear in the API; a package upgraded on the host leaves them as a diff."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.agent.support import wait_for
from tests.integration.tvm.test_server_tvm import import_feeds
from tests.support import VigilServer
from tests.unit.tvm.test_host_inventory import write_host
from vigil.agent.config import AgentConfig
from vigil.agent.enroll import enroll
from vigil.agent.runner import build_agent
from vigil.agent.sensors.registry import SensorRegistry
from vigil.agent.sensors.software_inventory import SoftwareInventorySensor


def _dist(site: Path, name: str, version: str) -> Path:
    d = site / f"{name}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Name: {name}\nVersion: {version}\n")
    return d


def test_an_agents_inventory_reaches_the_server_and_its_weaknesses_the_api(sqlite_server: VigilServer,
                                                                            tmp_path: Path) -> None:
    import_feeds(sqlite_server, tmp_path)
    sources = write_host(tmp_path / "host")
    site = tmp_path / "host/opt/app/venv/lib/python3.11/site-packages"
    old = _dist(site, "Demo_Lib", "1.0.0")
    pkg = tmp_path / "pkg.json"
    pkg.write_text(json.dumps(sqlite_server.onboarding_package(expires="1h", uses=1)))
    identity = enroll(pkg, tmp_path / "agent")
    registry = SensorRegistry()
    registry.register(SoftwareInventorySensor.name, lambda ctx: SoftwareInventorySensor(ctx, sources))
    config = AgentConfig(state_dir=tmp_path / "agent", heartbeat_seconds=0.5, batch_seconds=0.2,
                         software_inventory_check_seconds=0.2)
    agent = build_agent(config, registry=registry)
    agent.start()
    with sqlite_server.client(sqlite_server.admin_token()) as c:
        def weaknesses() -> set[str]:
            r = c.get(f"/api/machines/{identity.device_id}/vulnerabilities")
            return {v["id"] for v in r.json()["value"]} if r.status_code == 200 else set()

        try:
            assert wait_for(lambda: weaknesses() == {"CVE-2099-0001", "CVE-2099-0002", "CVE-2099-1000"}, 30), \
                weaknesses()
            # pip upgrades demo-lib on the host: the sensor notices and sends the diff
            (old / "METADATA").unlink()
            old.rmdir()
            _dist(site, "Demo_Lib", "2.0.0")
            assert wait_for(lambda: weaknesses() == {"CVE-2099-0001", "CVE-2099-0002"}, 30), weaknesses()
        finally:
            agent.stop()
        software = {s["name"]: s for s in c.get(f"/api/machines/{identity.device_id}/software").json()["value"]}
    assert software["demo-lib"]["versions"] == ["2.0.0"]
    assert software["openssl"]["packages"] == ["libssl3"] and software["linux"]["versions"] == ["6.1.76-1"]
    assert {"example.com/tool", "golang.org/x/net", "stdlib", "lodash", "requests"} <= set(software)
