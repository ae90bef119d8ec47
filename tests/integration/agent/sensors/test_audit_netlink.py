"""The audit rule session: overlapping agents never clobber each other; the last one restores audit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vigil.agent.errors import SensorUnavailable
from vigil.agent.sensors.audit_netlink import AuditControl, ExecRuleSession


@pytest.fixture
def control() -> AuditControl:
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_AUDIT_CONTROL)")
    try:
        ctl = AuditControl()
        ctl.status()
    except (SensorUnavailable, OSError) as e:
        pytest.skip(f"audit netlink unavailable here: {e}")
    return ctl


pytestmark = pytest.mark.root


def test_overlapping_sessions_restore_the_original_state(control: AuditControl, tmp_path: Path) -> None:
    before = control.status()
    state = tmp_path / "audit-state.json"
    a = ExecRuleSession(key=f"vigil_exec.test-a-{os.getpid()}", state_file=state)
    b = ExecRuleSession(key=f"vigil_exec.test-b-{os.getpid()}", state_file=state)
    a.open()
    try:
        b.open()
        try:
            keys = {r.key for r in control.list_rules()}
            assert {a.key, b.key} <= keys
            assert control.status().enabled == 1
            a.close()  # the first one out must not switch audit off under the other
            assert control.status().enabled == 1
            assert a.key not in {r.key for r in control.list_rules()}
        finally:
            b.close()
    finally:
        a.close()
    after = control.status()
    assert {r.key for r in control.list_rules()} & {a.key, b.key} == set()
    if not control.list_rules():
        assert (after.enabled, after.backlog_limit) == (before.enabled, before.backlog_limit)
    assert not state.exists()
    control.close()
