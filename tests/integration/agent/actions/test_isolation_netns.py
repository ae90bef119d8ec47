"""Isolation with real nftables, measured inside network namespaces only (never the root namespace)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import MGMT_ADDR, OTHER_ADDR, NetnsLab, netns_lab, require_netns

pytestmark = pytest.mark.root

DRIVER = """
import sys
from pathlib import Path
from vigil.agent.actions import isolation
from vigil.agent.actions.base import ActionContext, ActionSettings
from vigil.agent.clock import SystemClock
s = ActionSettings(Path(sys.argv[1]), sys.argv[2])
op = sys.argv[3]
if op == "isolate":
    isolation.isolate(s, sys.argv[4], sys.argv[5:], "test")
elif op == "restore":
    print(isolation.restore(ActionContext(s, SystemClock())))
else:
    print(isolation.release(s))
"""


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    require_netns()
    with netns_lab() as lab:
        yield lab


def _agent(lab: NetnsLab, state: Path, *args: str) -> str:
    """The agent's isolation module, run inside the endpoint namespace as the agent would run it."""
    done = lab.run(lab.ep, sys.executable, "-c", DRIVER, str(state), f"https://{MGMT_ADDR}:8443", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_full_isolation_keeps_only_the_server_and_survives_a_flush_until_released(
    lab: NetnsLab, tmp_path: Path
) -> None:
    _agent(lab, tmp_path, "isolate", "Full")
    assert lab.reachable(MGMT_ADDR, 8443)
    assert not lab.reachable(OTHER_ADDR, 8443) and not lab.reachable(OTHER_ADDR, 80)
    assert not lab.reachable(MGMT_ADDR, 22)  # only the server's port, not the whole host
    # A reboot (or anyone) flushing the ruleset: the next agent start re-applies it from its state.
    lab.run(lab.ep, "nft", "flush", "ruleset")
    assert lab.reachable(OTHER_ADDR, 80)
    assert "Full isolation" in _agent(lab, tmp_path, "restore")
    assert not lab.reachable(OTHER_ADDR, 80) and lab.reachable(MGMT_ADDR, 8443)
    # Isolating again replaces the table in one transaction (no window without rules, no duplicate).
    _agent(lab, tmp_path, "isolate", "Full")
    assert lab.nft_tables().count("vigil_isolation") == 1
    assert _agent(lab, tmp_path, "release") == "True"
    assert lab.reachable(OTHER_ADDR, 80) and lab.reachable(OTHER_ADDR, 8443)
    assert "vigil_isolation" not in lab.nft_tables()
    assert _agent(lab, tmp_path, "restore") == "None"  # released state is not re-applied
    assert _agent(lab, tmp_path, "release") == "False"


def test_selective_isolation_also_allows_its_allow_list(lab: NetnsLab, tmp_path: Path) -> None:
    _agent(lab, tmp_path, "isolate", "Selective", f"{OTHER_ADDR}:80")
    assert lab.reachable(MGMT_ADDR, 8443)
    assert lab.reachable(OTHER_ADDR, 80)
    assert not lab.reachable(OTHER_ADDR, 8443)
    _agent(lab, tmp_path, "release")
    assert lab.reachable(OTHER_ADDR, 8443)
