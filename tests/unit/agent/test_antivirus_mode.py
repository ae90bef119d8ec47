"""The antivirus mode: passive when another antivirus is seen (auto), else what the setting says."""

from __future__ import annotations

from vigil.agent.antivirus import Mode, resolve_mode
from vigil.agent.incumbent import Finding


def test_auto_is_passive_beside_another_antivirus_and_block_otherwise() -> None:
    clam = Finding("ClamAV", "clamd", 10, "process")
    edr_only = Finding("CrowdStrike Falcon", "falcond", 11, "process")
    assert resolve_mode("auto", [clam, edr_only]) == (
        Mode.PASSIVE, "another antivirus runs here (ClamAV): passive, to coexist")
    assert resolve_mode("auto", [edr_only])[0] is Mode.BLOCK
    assert resolve_mode("auto", [])[0] is Mode.BLOCK
    assert resolve_mode("block", [clam]) == (Mode.BLOCK, "av_mode = block")
    assert resolve_mode("audit", [])[0] is Mode.AUDIT
