"""Device-group matching: rules on name, domain, tag and OS; the highest rank wins; the default last."""

from __future__ import annotations

import pytest

from vigil.core.groups import DeviceFacts, GroupRule, GroupRuleError, assign_group, parse_conditions


def group(gid: int, rank: int | None, *rules: dict[str, str], default: bool = False) -> GroupRule:
    return GroupRule(gid, rank, parse_conditions(list(rules)), default)


GROUPS = [
    group(1, None, default=True),
    group(10, 2, {"property": "domain", "operator": "equals", "value": "corp.example.org"}),
    group(11, 1, {"property": "tag", "value": "ring-evaluate"}),
    group(12, 3, {"property": "name", "operator": "startsWith", "value": "db-"},
          {"property": "os", "value": "linux"}),
    group(13, 4),
]


@pytest.mark.parametrize(("facts", "enrolled", "expect"), [
    (DeviceFacts("web-01.corp.example.org", "Linux", ()), None, 10),
    (DeviceFacts("web-01.corp.example.org", "Linux", ("Ring-Evaluate",)), None, 11),  # rank 1 beats rank 2
    (DeviceFacts("DB-7", "Linux", ()), None, 12),  # case-insensitive, both conditions hold
    (DeviceFacts("db-7", "Windows", ()), None, 1),  # one condition fails: default
    (DeviceFacts("laptop", "Linux", ()), 13, 13),  # an empty rule holds only devices enrolled into it
    (DeviceFacts("laptop.corp.example.org", "Linux", ()), 13, 10),  # a higher-ranked rule claims it
])
def test_a_device_joins_its_highest_ranked_matching_group(facts: DeviceFacts, enrolled: int | None,
                                                          expect: int) -> None:
    assert assign_group(facts, GROUPS, enrolled) == expect


def test_bad_rules_say_where() -> None:
    with pytest.raises(GroupRuleError) as e:
        parse_conditions([{"property": "tag", "value": "a"}, {"property": "tag", "operator": "like", "value": "b"}])
    assert e.value.where == "rules[1].operator"
    with pytest.raises(GroupRuleError):
        parse_conditions([{"property": "name", "value": "  "}])
