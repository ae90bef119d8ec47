"""Access in basic and RBAC mode: roles through user groups, device groups open to those groups."""

from __future__ import annotations

import pytest

from vigil.core.rbac import BasicRole, Permission, PermissionsMode, UserGroupGrant, access_of

VIEW = frozenset({Permission.VIEW_DATA_SECOPS})
DEVICE_GROUPS = {1: frozenset(), 2: frozenset({10}), 3: frozenset({20})}


def test_basic_mode_is_full_access_or_read_only_on_everything() -> None:
    assert access_of(PermissionsMode.BASIC, BasicRole.FULL_ACCESS, [], {}).permissions == frozenset(Permission)
    ro = access_of(PermissionsMode.BASIC, BasicRole.READ_ONLY, [], {})
    assert Permission.ALERTS_INVESTIGATION not in ro.permissions and ro.device_group_ids is None


def test_rbac_mode_grants_role_permissions_on_open_groups_only() -> None:
    a = access_of(PermissionsMode.RBAC, BasicRole.READ_ONLY, [UserGroupGrant(10, VIEW, False)], DEVICE_GROUPS)
    assert a.permissions == VIEW and a.device_group_ids == frozenset({1, 2})


def test_read_only_users_lose_access_in_rbac_mode_until_given_a_role() -> None:
    a = access_of(PermissionsMode.RBAC, BasicRole.READ_ONLY, [UserGroupGrant(10, frozenset(), False)], DEVICE_GROUPS)
    assert a.permissions == frozenset() and a.device_group_ids == frozenset()


def test_administrators_have_everything_everywhere() -> None:
    for a in (access_of(PermissionsMode.RBAC, BasicRole.FULL_ACCESS, [], DEVICE_GROUPS),
              access_of(PermissionsMode.RBAC, BasicRole.READ_ONLY, [UserGroupGrant(20, VIEW, True)], DEVICE_GROUPS)):
        assert a.permissions == frozenset(Permission) and a.device_group_ids is None


def test_token_scopes_narrow_permissions_not_groups() -> None:
    a = access_of(PermissionsMode.RBAC, BasicRole.READ_ONLY, [UserGroupGrant(10, VIEW, False)], DEVICE_GROUPS)
    assert a.restricted_to(frozenset({Permission.ALERTS_INVESTIGATION})).permissions == frozenset()


def test_permissions_are_accepted_in_ascii_and_by_their_short_alias() -> None:
    from vigil.core.rbac import PERMISSION_ALIASES, Permission, UnknownPermission, parse_permissions

    assert Permission("view-data-secops") is Permission.VIEW_DATA_SECOPS
    assert Permission("View data - Security operations") is Permission.VIEW_DATA_SECOPS
    assert Permission("active remediation actions - tvm - exception handling") is Permission.TVM_EXCEPTION_HANDLING
    assert parse_permissions(["live-response-basic", "Alerts investigation"]) == {
        Permission.LIVE_RESPONSE_BASIC, Permission.ALERTS_INVESTIGATION}
    assert set(PERMISSION_ALIASES) == set(Permission) and len(set(PERMISSION_ALIASES.values())) == len(Permission)
    with pytest.raises(UnknownPermission, match="scopes\\[0\\]: unknown permission 'view-data'"):
        parse_permissions(["view-data"], "scopes")


def test_a_name_matches_its_one_ascii_spelling_never_an_ambiguous_one() -> None:
    from vigil.core.names import match_name

    assert match_name("Ring - Pilot", ["Ring – Pilot", "Ring – Full"]) == "Ring – Pilot"
    assert match_name("Ring – Pilot", ["Ring – Pilot"]) == "Ring – Pilot"
    assert match_name("Ring - Pilot", ["Ring – Pilot", "Ring — Pilot"]) is None
    assert match_name("Ring Pilot", ["Ring – Pilot"]) is None
