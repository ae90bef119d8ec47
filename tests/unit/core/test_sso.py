"""Reading the groups claim and mapping IdP groups to Vigil user groups."""

from __future__ import annotations

import pytest

from vigil.core.sso import SsoError, SsoFailure, claim_values, map_groups


def test_claim_values_reads_lists_strings_and_nested_claims() -> None:
    claims = {"groups": ["a", "b"], "role": "admin", "realm_access": {"roles": ["soc"]}}
    assert claim_values(claims, "groups") == ["a", "b"]
    assert claim_values(claims, "role") == ["admin"]
    assert claim_values(claims, "realm_access.roles") == ["soc"]
    assert claim_values(claims, "missing") is None
    assert claim_values(claims, "realm_access.missing") is None
    assert claim_values(claims, "role.deeper") is None


@pytest.mark.parametrize("value", [42, ["a", 1], {"a": "b"}, None])
def test_a_groups_claim_of_another_shape_is_an_error_naming_the_claim(value: object) -> None:
    with pytest.raises(SsoError) as e:
        claim_values({"groups": value}, "groups")
    assert e.value.failure is SsoFailure.BAD_CLAIMS and "'groups'" in e.value.message


def test_only_mapped_groups_count_in_first_seen_order_without_repeats() -> None:
    group_map = {"soc": ["Tier 1"], "leads": ["Tier 3", "Tier 1"], "Tier 2": []}
    assert map_groups(["leads", "soc", "Tier 1", "Tier 2", "other"], group_map) == ["Tier 3", "Tier 1"]
    assert map_groups([], group_map) == []
