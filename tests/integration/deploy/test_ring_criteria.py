"""Ring exit criteria on a seeded fleet: sensor health from the fields the agent really reports, device counts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from tests.unit.core.test_plan import complete
from vigil.core.plan import Ring
from vigil.deploy import plan as deployment
from vigil.store import db
from vigil.store.devices import ensure_default_group
from vigil.store.schema import alerts, device_groups, devices

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
# What a real agent sends: sensor lines "<state>[: reason]" and the budget line, never "active".
HEALTHY = {"process": "active", "file": "active", "network": "active",
           "resource_budget": "within budget: cpu 0.4%, rss 48 MiB (caps 5% cpu, 200 MiB); throttled 0 s"}


@pytest.fixture()
def conn(db_url: str, tmp_path: Path) -> Iterator[sa.Connection]:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'fleet.db'}")
    db.upgrade(engine)
    try:
        with engine.begin() as c:
            ensure_default_group(c, NOW)
            d = complete()
            d["rings"][0]["target_devices"] = 3  # Evaluate: 3 devices
            deployment.save(c, yaml.safe_dump(d, sort_keys=False, allow_unicode=True), "test", NOW)
            deployment.apply(c, "test", NOW)
            yield c
    finally:
        engine.dispose()


def seed(c: sa.Connection, name: str, group: str, *, sensors: dict[str, str] | None = None,
         counters: dict[str, Any] | None = None, seen: timedelta = timedelta(minutes=5), tested: bool = True) -> str:
    gid = c.execute(sa.select(device_groups.c.id).where(device_groups.c.name == group)).scalar_one()
    dev = f"dev-{name}"
    c.execute(devices.insert().values(
        id=dev, computer_dns_name=name, os_platform="Linux", group_id=gid, credential_hash="x" * 64,
        first_seen=NOW - timedelta(days=1), last_seen=NOW - seen, tags=[], agent_tags=[],
        counters=counters if counters is not None else {"produced": 10_000, "dropped": {}},
        sensors=sensors if sensors is not None else HEALTHY))
    if tested:
        c.execute(alerts.insert().values(
            id=f"al-{name}", machine_id=dev, title="Vigil detection test", severity="Informational",
            category="SuspiciousActivity", status="New", detection_source="CustomDetection",
            rule_id=deployment.DETECTION_TEST_RULE_ID, alert_creation_time=NOW, first_event_time=NOW,
            last_event_time=NOW, last_update_time=NOW))
    return dev


def criteria(c: sa.Connection, ring: Ring = Ring.EVALUATE) -> dict[str, deployment.Criterion]:
    st = deployment.state(c)
    assert st is not None
    return {k.name: k for k in deployment.ring_criteria(c, st, NOW, ring)}


def test_a_healthy_fleet_meets_every_criterion_and_the_budget_line_is_not_a_sensor(conn: sa.Connection) -> None:
    for n in ("a", "b", "c"):
        seed(conn, n, "Ring – Evaluate")
    got = criteria(conn)
    assert all(k.met for k in got.values()), {k.name: k.detail for k in got.values() if not k.met}
    assert got["Sensor healthy"].value == "3 of 3" and got["Sensor healthy"].failing == ()
    assert got["Target devices"].value == "3 enrolled, 3 healthy"
    assert got["Target devices"].target == "3 enrolled and healthy"


def test_unhealthy_sensors_and_device_counts_are_computed_and_the_failing_devices_named(conn: sa.Connection) -> None:
    seed(conn, "good", "Ring – Evaluate")
    seed(conn, "degraded", "Ring – Evaluate",
         sensors={**HEALTHY, "network": "degraded: audit disabled by configuration: socket-table polling"})
    seed(conn, "throttled", "Ring – Evaluate",
         sensors={**HEALTHY, "resource_budget": "throttling: cpu 9.0% (caps 5% cpu, 200 MiB); throttled 40 s"})
    seed(conn, "lossy", "Ring – Evaluate", counters={"produced": 1000, "dropped": {"spool_full": 5}})
    seed(conn, "silent", "Ring – Evaluate", seen=timedelta(days=2), tested=False)
    seed(conn, "elsewhere", "Ring – Pilot",
         sensors={**HEALTHY, "process": "unavailable: eBPF and audit both missing"})
    got = criteria(conn)
    health = got["Sensor healthy"]
    assert not health.met and health.value == "2 of 5"
    why = {f["name"]: f["why"] for f in health.failing}
    assert set(why) == {"degraded", "throttled", "lossy"}
    assert "network: degraded: audit disabled" in why["degraded"]
    assert why["throttled"].startswith("resource budget: throttling")
    assert "5 of 1000 event(s) dropped" in why["lossy"]
    # 5 enrolled but only 2 healthy: a target of 3 is not met by counting enrolled devices alone.
    count = got["Target devices"]
    assert not count.met and count.value == "5 enrolled, 2 healthy"
    reporting = got["Devices reporting"]
    assert not reporting.met and [f["name"] for f in reporting.failing] == ["silent"]
    assert [f["name"] for f in got["Detection test passed"].failing] == ["silent"]
    assert [f["name"] for f in got["No crash or drop regression"].failing] == ["lossy"]
    # The Pilot ring is measured on its own devices only.
    pilot = criteria(conn, Ring.PILOT)
    assert pilot["Sensor healthy"].value == "0 of 1"
    assert "process: unavailable" in pilot["Sensor healthy"].failing[0]["why"]
    assert not pilot["Target devices"].met and pilot["Target devices"].value == "1 enrolled, 0 healthy"


def test_one_healthy_device_does_not_meet_a_target_of_fifty(conn: sa.Connection) -> None:
    seed(conn, "only", "Ring – Evaluate")
    d = complete()
    d["rings"][0]["target_devices"] = 50
    deployment.save(conn, yaml.safe_dump(d, sort_keys=False, allow_unicode=True), "test", NOW)
    got = criteria(conn)
    assert got["Sensor healthy"].met
    assert not got["Target devices"].met and "target 50" in got["Target devices"].detail


def test_the_migration_view_lists_devices_still_running_the_incumbent_per_ring(conn: sa.Connection) -> None:
    clam = "detected: ClamAV; ClamAV (clamd pid 812)"
    seed(conn, "old-av", "Ring – Evaluate", sensors={**HEALTHY, "incumbent_security": clam})
    seed(conn, "clean", "Ring – Evaluate", sensors={**HEALTHY, "incumbent_security": "none detected"})
    seed(conn, "pilot-av", "Ring – Pilot", sensors={**HEALTHY, "incumbent_security": clam})
    st = deployment.state(conn)
    assert st is not None
    view = deployment.incumbent_devices(conn, st.plan)
    assert [d["name"] for d in view["Evaluate"]] == ["old-av"] and view["Evaluate"][0]["incumbent"] == clam
    assert [d["name"] for d in view["Pilot"]] == ["pilot-av"] and view["Full"] == []
    assert criteria(conn)["Sensor healthy"].value == "2 of 2"  # an incumbent is reported, not a sensor fault


def test_a_component_moves_to_the_next_ring_only_when_the_previous_ring_meets_its_criteria(
        db_url: str, tmp_path: Path) -> None:
    from vigil.app import rollout
    from vigil.app.errors import Refused
    from vigil.app.principal import local_cli
    from vigil.app.stores import sql_store
    from vigil.core.clock import FixedClock
    from vigil.store import audit, plans

    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'rollout.db'}")
    db.upgrade(engine)
    try:
        d = complete()
        d["rings"][0]["target_devices"] = 1
        d["adoption"] = [a for a in d["adoption"] if a["component"] in ("EDR", "NGP", "MTE")]
        with engine.begin() as c:
            ensure_default_group(c, NOW)
            st, _ = deployment.save(c, yaml.safe_dump(d, sort_keys=False, allow_unicode=True), "test", NOW)
            deployment.apply(c, "test", NOW)
            for email in st.signoffs.required:
                plans.record_signoff(c, st.version, st.digest, email, email, NOW)
            # The ring is empty, so its criteria are unmet (and no device needs the signer this store lacks).
        store, clock, who = sql_store(engine), FixedClock(NOW), local_cli("test@host")
        step = rollout.enable_next(store, clock, who, Ring.EVALUATE)
        assert (step.step.component.value, step.state.value, step.groups[0].devices_updated) == ("NGP", "audit", 0)
        waits = r"NGP waits for the Evaluate ring's exit criteria: Target devices \(0 enrolled, 0 healthy, target 1 "
        with pytest.raises(Refused, match=waits):
            rollout.enable_next(store, clock, who, Ring.PILOT)
        step = rollout.enable_next(store, clock, who, Ring.PILOT, override_reason="lab checked by hand")
        assert step.state.value == "audit" and step.overridden
        with engine.connect() as c:
            st2 = deployment.state(c)
            assert st2 is not None
            assert st2.ring_components["Pilot"]["NGP"] == "audit" and st2.ring_components["Full"]["NGP"] == "off"
            assert st2.ring_results["Pilot"]["NGP"]["groups"][0]["group"] == "Ring – Pilot"
            assert [(o.action, o.reason) for o in st2.overrides] == [
                ("plan.component_enable_override", "lab checked by hand")]
            assert audit.entries(c, action="plan.component_enable")[0][0].after["ring"] == "Evaluate"
    finally:
        engine.dispose()
