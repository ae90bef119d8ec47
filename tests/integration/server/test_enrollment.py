"""Enrollment and device credentials, attacked the ways an intruder would try."""

from __future__ import annotations

import sqlalchemy as sa

from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.store.db import make_engine
from vigil.store.schema import devices, telemetry_tables


def _count(server: VigilServer, table: str = "DeviceProcessEvents") -> int:
    engine = make_engine(server.db_url or f"sqlite:///{server.data_dir / 'vigil.db'}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(telemetry_tables[table])).scalar_one())
    finally:
        engine.dispose()


def test_single_use_token_enrolls_once(server: VigilServer) -> None:
    pkg = server.onboarding_package(expires="1h", uses=1)
    first = enroll_raw(server, pkg["token"])
    assert first.status_code == 200, first.text
    assert first.json()["credential"].startswith(f"vgd_{first.json()['device_id']}.")
    second = enroll_raw(server, pkg["token"], hostname="other")
    assert second.status_code == 401
    assert second.json() == {"error": "enrollment_refused", "detail": "enrollment token is used up", "field": "token"}


def test_n_use_token_allows_exactly_n(server: VigilServer) -> None:
    pkg = server.onboarding_package(expires="1h", uses=3)
    codes = [enroll_raw(server, pkg["token"], hostname=f"h{i}").status_code for i in range(5)]
    assert codes == [200, 200, 200, 401, 401]


def test_expired_and_unknown_tokens_are_refused(sqlite_server: VigilServer) -> None:
    engine = make_engine(f"sqlite:///{sqlite_server.data_dir / 'vigil.db'}")
    pkg = sqlite_server.onboarding_package(expires="1h")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE enrollment_tokens SET expires_at = '2000-01-01 00:00:00.000000'"))
    engine.dispose()
    r = enroll_raw(sqlite_server, pkg["token"])
    assert r.status_code == 401 and r.json()["detail"] == "enrollment token has expired"
    r = enroll_raw(sqlite_server, "vge_" + "A" * 43)
    assert r.status_code == 401 and r.json()["detail"] == "unknown enrollment token"


def test_forged_revoked_and_foreign_credentials_store_nothing(server: VigilServer) -> None:
    pkg = server.onboarding_package(expires="1h", uses=2)
    a = enroll_raw(server, pkg["token"], "host-a").json()
    b = enroll_raw(server, pkg["token"], "host-b").json()

    # A forged secret for a real device id.
    forged = f"vgd_{a['device_id']}.{'x' * 43}"
    assert post_batch(server, forged, [process_event(a["device_id"], 1)]).status_code == 401
    # Device B's valid credential, reporting events as device A.
    r = post_batch(server, b["credential"], [process_event(a["device_id"], 1)])
    assert r.status_code == 422 and r.json()["field"] == "events[0].DeviceId"
    # No credential at all.
    with server.client() as c:
        assert c.post("/agent/v1/telemetry", content=b"{}").status_code == 401
    assert _count(server) == 0

    # Offboarding revokes the identity.
    with server.client(server.admin_token()) as c:
        assert c.post(f"/api/machines/{a['device_id']}/offboard", json={"Comment": "retired"}).status_code == 200
        machine = c.get(f"/api/machines/{a['device_id']}").json()
    assert machine["healthStatus"] == "Inactive" and machine["isOffboarded"] is True
    r = post_batch(server, a["credential"], [process_event(a["device_id"], 1)])
    assert r.status_code == 401
    assert _count(server) == 0
    # The other device is unaffected.
    assert post_batch(server, b["credential"], [process_event(b["device_id"], 1)]).status_code == 200
    assert _count(server) == 1


def test_enrollment_attempts_are_rate_limited(tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv = VigilServer.create(tmp_path / "srv", "")
    toml = srv.data_dir / "vigil.toml"
    toml.write_text(toml.read_text().replace("enroll_rate_per_minute = 1000", "enroll_rate_per_minute = 5"))
    srv.start()
    try:
        codes = [enroll_raw(srv, f"vge_guess{i}").status_code for i in range(8)]
    finally:
        srv.stop()
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429] * 3


def test_device_record_holds_only_a_hash_of_the_credential(sqlite_server: VigilServer) -> None:
    pkg = sqlite_server.onboarding_package()
    cred = enroll_raw(sqlite_server, pkg["token"]).json()["credential"]
    engine = make_engine(f"sqlite:///{sqlite_server.data_dir / 'vigil.db'}")
    with engine.connect() as conn:
        stored = conn.execute(sa.select(devices.c.credential_hash)).scalar_one()
        token_hashes = conn.execute(sa.text("SELECT token_hash FROM enrollment_tokens")).scalars().all()
    engine.dispose()
    assert cred.split(".", 1)[1] not in stored and len(stored) == 64
    assert pkg["token"] not in token_hashes
