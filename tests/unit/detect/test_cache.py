"""The compiled-rule cache: a hit gives the same rules, any change to what decides the result misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.detect.support import rule_yaml, sysmon
from vigil.core.severity import RuleLevel
from vigil.detect import LoadReport, RuleFilter, load_rules

RULE_ID = "5f0c7a11-2b3c-4d5e-8f90-a1b2c3d4e5f6"


def _write(rules: Path, word: str, level: str = "high") -> None:
    rules.mkdir(exist_ok=True)
    (rules / "r.yml").write_text(rule_yaml(f"selection:\n  CommandLine|contains: '{word}'\ncondition: selection",
                                           rule_id=RULE_ID, level=level))


def _hits(report_ruleset: object, command: str) -> list[str]:
    return [h.rule_id for h in report_ruleset.match_windows(sysmon(CommandLine=command))]  # type: ignore[attr-defined]


def test_second_load_is_a_hit_with_the_same_matches(tmp_path: Path) -> None:
    _write(tmp_path / "rules", "whoami")
    first = load_rules([tmp_path / "rules"], cache_dir=tmp_path / "cache")
    second = load_rules([tmp_path / "rules"], cache_dir=tmp_path / "cache")
    assert (first.cache, second.cache) == ("stored", "hit")
    assert second.ruleset.rules == first.ruleset.rules
    assert _hits(second.ruleset, "whoami /all") == [RULE_ID]
    assert _hits(second.ruleset, "hostname") == []


def test_rule_positions_by_id_are_the_same_from_the_cache(tmp_path: Path) -> None:
    """Workers send a hit's rule as its position; a warm rule set finds it from the ids alone."""
    rules = tmp_path / "rules"
    rules.mkdir()
    ids = [f"5f0c7a11-2b3c-4d5e-8f90-a1b2c3d4e5f{n}" for n in range(3)]
    for n, rule_id in enumerate(ids):
        (rules / f"r{n}.yml").write_text(rule_yaml(f"selection:\n  CommandLine|contains: 'w{n}'\ncondition: selection",
                                                   rule_id=rule_id))
    cold = load_rules([rules], cache_dir=tmp_path / "cache").ruleset
    warm = load_rules([rules], cache_dir=tmp_path / "cache").ruleset
    for ruleset in (cold, warm):
        assert [ruleset.rule_index(r) for r in ids] == [[x.id for x in ruleset.rules].index(r) for r in ids]
    fresh = load_rules([rules], cache_dir=tmp_path / "cache").ruleset
    assert sorted(fresh.rule_index(r) for r in ids) == [0, 1, 2]
    assert fresh.rules._made == [None, None, None]  # type: ignore[attr-defined]  # no RuleInfo made for it
    with pytest.raises(KeyError):
        warm.rule_index("no-such-rule")


def test_edited_rule_is_never_served_stale(tmp_path: Path) -> None:
    _write(tmp_path / "rules", "whoami")
    load_rules([tmp_path / "rules"], cache_dir=tmp_path / "cache")
    _write(tmp_path / "rules", "hostname")
    report = load_rules([tmp_path / "rules"], cache_dir=tmp_path / "cache")
    assert report.cache == "stored"
    assert _hits(report.ruleset, "hostname") == [RULE_ID]
    assert _hits(report.ruleset, "whoami") == []


def test_filter_is_part_of_the_key(tmp_path: Path) -> None:
    _write(tmp_path / "rules", "whoami", level="low")
    load_rules([tmp_path / "rules"], cache_dir=tmp_path / "cache")
    report = load_rules([tmp_path / "rules"], cache_dir=tmp_path / "cache",
                        rule_filter=RuleFilter(min_level=RuleLevel.HIGH))
    assert report.cache == "stored"
    assert len(report.ruleset) == 0


def test_damaged_entry_is_recompiled(tmp_path: Path) -> None:
    _write(tmp_path / "rules", "whoami")
    load_rules([tmp_path / "rules"], cache_dir=tmp_path / "cache")
    for entry in (tmp_path / "cache").iterdir():
        entry.write_bytes(entry.read_bytes()[:100])
    report = load_rules([tmp_path / "rules"], cache_dir=tmp_path / "cache")
    assert report.cache == "stored"
    assert _hits(report.ruleset, "whoami") == [RULE_ID]


def test_unwritable_cache_is_reported_and_the_load_succeeds(tmp_path: Path) -> None:
    _write(tmp_path / "rules", "whoami")
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    report = load_rules([tmp_path / "rules"], cache_dir=blocker)
    assert report.cache.startswith("not written to")
    assert _hits(report.ruleset, "whoami") == [RULE_ID]


def test_a_changed_filter_file_is_part_of_the_key(tmp_path: Path) -> None:
    _write(tmp_path / "rules", "whoami")
    filters = tmp_path / "filters"
    filters.mkdir()
    flt = filters / "mf_admin.yml"

    def write_filter(user: str) -> None:
        flt.write_text(f"title: Admin\nid: 6a0c7a11-2b3c-4d5e-8f90-a1b2c3d4e5f6\nlogsource:\n    product: windows\n"
                       f"filter:\n    rules: {RULE_ID}\n    selection:\n        User: {user}\n"
                       "    condition: not selection\n")

    def hit_for(report: LoadReport, user: str) -> bool:
        return bool(report.ruleset.match_windows(sysmon(CommandLine="whoami", User=user)))

    write_filter("alice")
    first = load_rules([tmp_path / "rules", filters], cache_dir=tmp_path / "cache")
    assert first.cache == "stored" and not hit_for(first, "alice") and hit_for(first, "bob")
    write_filter("bob")
    second = load_rules([tmp_path / "rules", filters], cache_dir=tmp_path / "cache")
    assert second.cache == "stored" and hit_for(second, "alice") and not hit_for(second, "bob")
    third = load_rules([tmp_path / "rules", filters], cache_dir=tmp_path / "cache")
    assert third.cache == "hit" and hit_for(third, "alice") and not hit_for(third, "bob")


def test_placeholder_values_are_part_of_the_key(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text(rule_yaml("selection:\n  User|expand: '%admins%'\ncondition: selection",
                                           rule_id=RULE_ID))

    def load(values: dict[str, tuple[str, ...]] | None) -> LoadReport:
        return load_rules([rules], cache_dir=tmp_path / "cache", placeholders=values)

    def users(report: LoadReport) -> list[str]:
        return [u for u in ("alice", "bob") if report.ruleset.match_windows(sysmon(User=u))]

    missing = load(None)
    assert missing.cache == "stored" and len(missing.errors) == 1
    alice = load({"admins": ("alice",)})
    assert alice.cache == "stored" and users(alice) == ["alice"]
    bob = load({"admins": ("bob",)})
    assert bob.cache == "stored" and users(bob) == ["bob"]
    again = load({"admins": ("alice",)})
    assert again.cache == "hit" and users(again) == ["alice"] and not again.errors
