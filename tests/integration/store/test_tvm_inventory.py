"""A device's software inventory kept from the agent's rows on real SQLite and PostgreSQL: a full inventory in
parts, a diff on the generation held, parts or diffs out of order refused (out of sync) until the next full
inventory, first-seen times kept across a full resend, bad rows named."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from vigil.store import db
from vigil.store.devices import ensure_default_group
from vigil.store.schema import devices, tvm_inventory_state, tvm_software_inventory
from vigil.store.tvm import apply_inventory
from vigil.tvm.purls import inventory_parts

T0 = datetime(2026, 12, 7, 12, tzinfo=UTC)
PURLS = [f"pkg:pypi/pkg-{i:04d}@1.{i}.0" for i in range(5000)]  # four parts


@pytest.fixture
def engine(db_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'd.db'}")
    db.upgrade(engine)
    with engine.begin() as conn:
        group = ensure_default_group(conn, T0)
        conn.execute(devices.insert().values(
            id="dev-a", computer_dns_name="a-web-01", os_platform="Linux", os_version="12", group_id=group, tags=[],
            agent_tags=[], credential_hash="x" * 64, first_seen=T0, last_seen=T0, counters={}, sensors={}))
    yield engine
    engine.dispose()


def _apply(engine: sa.Engine, fields: Any, at: datetime = T0) -> Any:
    with engine.begin() as conn:
        return apply_inventory(conn, "dev-a", fields, at)


def _held(engine: sa.Engine) -> tuple[set[str], Any]:
    with engine.connect() as conn:
        purls = {r[0] for r in conn.execute(sa.select(tvm_software_inventory.c.SoftwarePurl))}
        state = conn.execute(sa.select(tvm_inventory_state)).first()
    return purls, state


def test_full_in_parts_then_diffs_and_out_of_order_rows(engine: sa.Engine) -> None:
    parts = inventory_parts("s1", 1, None, PURLS, [])
    assert len(parts) > 1
    for p in parts[:-1]:
        out = _apply(engine, p)
        assert out.applied and not out.complete
    assert _held(engine)[1].generation == 0  # not whole yet
    assert _apply(engine, parts[-1]).complete
    purls, state = _held(engine)
    assert purls == set(PURLS) and (state.generation, state.pending_generation, state.out_of_sync) == (1, None, False)

    diff = inventory_parts("s1", 2, 1, ["pkg:pypi/pkg-0000@2.0.0"], ["pkg:pypi/pkg-0000@1.0.0"])[0]
    assert _apply(engine, diff, T0 + timedelta(hours=1)).complete
    purls, state = _held(engine)
    assert "pkg:pypi/pkg-0000@2.0.0" in purls and "pkg:pypi/pkg-0000@1.0.0" not in purls and state.generation == 2

    # the same diff again (base 1, the server holds 2), a diff from a gap, another series: refused, nothing changes
    for bad in (diff, inventory_parts("s1", 5, 4, ["pkg:pypi/x@1"], [])[0],
                inventory_parts("s2", 3, 2, ["pkg:pypi/x@1"], [])[0]):
        out = _apply(engine, bad)
        assert not out.applied and "waiting for the next full inventory" in out.problem
    purls, state = _held(engine)
    assert "pkg:pypi/x@1" not in purls and state.out_of_sync and state.generation == 2

    # the next full inventory resyncs; a package seen before keeps its first-seen time
    full = inventory_parts("s1", 3, None, ["pkg:pypi/pkg-0001@1.1.0", "pkg:pypi/new@1.0"], [])[0]
    assert _apply(engine, full, T0 + timedelta(days=1)).complete
    with engine.connect() as conn:
        seen = dict(conn.execute(sa.select(tvm_software_inventory.c.SoftwarePurl,
                                           tvm_software_inventory.c.FirstSeenTimestamp)).all())
        name = conn.execute(sa.select(tvm_software_inventory.c.DeviceName)).first()
    assert set(seen) == {"pkg:pypi/pkg-0001@1.1.0", "pkg:pypi/new@1.0"}
    assert seen["pkg:pypi/pkg-0001@1.1.0"].replace(tzinfo=UTC) == T0
    assert seen["pkg:pypi/new@1.0"].replace(tzinfo=UTC) == T0 + timedelta(days=1)
    assert name[0] == "a-web-01" and not _held(engine)[1].out_of_sync


def test_a_part_out_of_order_is_refused(engine: sa.Engine) -> None:
    parts = inventory_parts("s1", 1, None, PURLS, [])
    _apply(engine, parts[0])
    out = _apply(engine, parts[2])
    assert not out.applied and _held(engine)[1].out_of_sync


@pytest.mark.parametrize(("fields", "problem"), [
    ("not an object", "AdditionalFields is not an object"),
    ({"Series": "", "Generation": 1, "Base": None, "Part": 1, "Parts": 1, "Added": [], "Removed": []}, "Series"),
    ({"Series": "s", "Generation": 0, "Base": None, "Part": 1, "Parts": 1, "Added": [], "Removed": []},
     "Generation"),
    ({"Series": "s", "Generation": 2, "Base": 2, "Part": 1, "Parts": 1, "Added": [], "Removed": []}, "Base"),
    ({"Series": "s", "Generation": 1, "Base": None, "Part": 2, "Parts": 1, "Added": [], "Removed": []}, "Part"),
    ({"Series": "s", "Generation": 1, "Base": None, "Part": 1, "Parts": 1, "Added": [1], "Removed": []}, "Added"),
])
def test_bad_rows_are_named(engine: sa.Engine, fields: Any, problem: str) -> None:
    out = _apply(engine, fields)
    assert not out.applied and problem in out.problem


def test_an_unreadable_purl_is_skipped_and_reported(engine: sa.Engine) -> None:
    out = _apply(engine, inventory_parts("s1", 1, None, ["pkg:pypi/ok@1.0", "pkg:maven/a/b@1"], [])[0])
    assert out.applied and "1 package URLs skipped" in out.problem and "maven" in out.problem
    assert _held(engine)[0] == {"pkg:pypi/ok@1.0"}
