"""The antivirus policy's merge of the tenant default and a group, and what it does with each kind of threat."""

from __future__ import annotations

from vigil.av.policy import effective, parse_policy, reaction


def test_reaction_per_threat_type_pua_mode_and_allowed_names() -> None:
    p = parse_policy({"threat_actions": {"malware": "remove", "heuristic": "audit"},
                      "allowed_threats": ["Trojan:Linux/Tolerated"]}, "global")
    assert reaction(p, "Trojan:Linux/Bad", "malware") == "remove"
    assert reaction(p, "Trojan:Linux/Tolerated", "malware") == "allow"
    assert reaction(p, "Heur:Linux/Packed", "heuristic") == "audit"
    assert reaction(p, "Virus:DOS/EICAR_Test_File", "test") == "quarantine"  # unset: quarantine
    assert reaction(p, "PUA:Linux/Miner", "pua") == "quarantine"  # PUA protection on (block) when unset
    for mode, expect in (("off", "allow"), ("audit", "audit"), ("block", "quarantine")):
        assert reaction(parse_policy({"pua_mode": mode}, "g"), "PUA:Linux/Miner", "pua") == expect


def test_a_group_overrides_per_setting_and_threat_type_and_adds_allowed_threats() -> None:
    default = parse_policy({"mode": "block", "pua_mode": "block", "threat_actions": {"malware": "remove"},
                            "allowed_threats": ["A"]}, "global")
    group = parse_policy({"pua_mode": "audit", "threat_actions": {"test": "allow"}, "allowed_threats": ["B"]}, "g")
    got = effective(default, group)
    assert (got.mode, got.pua_mode, got.allowed_threats) == ("block", "audit", ("A", "B"))
    assert dict(got.threat_actions) == {"malware": "remove", "test": "allow"}
    assert parse_policy(got.as_dict(), "again") == got  # what is stored and sent reads back the same
