"""The developer set: every SigmaHQ rule that fired on EVTX-ATTACK-SAMPLES still fires, on the same sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vigil.detect import load_rules
from vigil.detect.triage import discover_inputs, triage

pytestmark = pytest.mark.evaluation

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
RULES = DATA / "sigma" / "rules" / "windows"
SAMPLES = DATA / "evtx" / "EVTX-ATTACK-SAMPLES"
FIRED = Path(__file__).with_name("evtx_attack_samples_fired.txt")

if not RULES.is_dir() or not SAMPLES.is_dir():
    pytest.skip(f"third-party corpus absent under {DATA} (set VIGIL_SHARED_DATA)", allow_module_level=True)


def _recorded() -> dict[str, set[str]]:
    out = {}
    for line in FIRED.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            rule_id, *sources = line.split("\t")
            out[rule_id] = set(sources)
    return out


def test_nothing_that_fired_stops_firing(tmp_path: Path) -> None:
    report = load_rules([RULES], cache_dir=tmp_path)
    assert not report.errors
    fired: dict[str, set[str]] = {}
    for result in triage(report.ruleset, discover_inputs([SAMPLES]), workers=2):
        assert result.error is None, (result.path, result.error)
        for d in result.detections:
            fired.setdefault(d.hit.rule_id, set()).add(f"{d.source}/{d.event_id}")
    recorded = _recorded()
    assert len(recorded) > 300
    lost = {rule_id: sorted(sources - fired.get(rule_id, set())) for rule_id, sources in recorded.items()
            if not sources <= fired.get(rule_id, set())}
    assert not lost, lost


def test_process_creation_rules_with_original_file_name_in_an_or_branch_run_on_4688(tmp_path: Path) -> None:
    """Security 4688 has no OriginalFileName: a rule that names it only beside Image in an OR is bound there,
    with the field reported absent, and fires on a 4688 record of the set whose Image matches."""
    rule = RULES / "process_creation" / "proc_creation_win_tasklist_module_enumeration.yml"
    report = load_rules([rule], cache_dir=None)
    assert not report.notes
    assert [(a.source, a.fields) for a in report.absent] == [("Security 4688", ("OriginalFileName",))]
    # LM_ScheduledTask_ATSVC_target_host.evtx's 4688 of tasklist.exe, with the command line this rule looks for
    # (the set's 4688 records log none).
    event = {"Channel": "Security", "EventID": 4688, "NewProcessName": "C:\\Windows\\System32\\tasklist.exe",
             "CommandLine": "tasklist /m rdpcorets.dll"}
    assert [h.rule_id for h in report.ruleset.match_windows(event)] == ["34275eb8-fa19-436b-b959-3d9ecd53fa1f"]
