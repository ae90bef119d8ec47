"""The MFA policy per role with its grace period, and recovery codes' shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vigil.core.mfa import MfaPolicy, MfaState, new_recovery_codes, normalize_recovery_code

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def test_required_roles_get_a_grace_period_from_their_first_sign_in() -> None:
    policy = MfaPolicy(frozenset({"full-access", "Security administrator"}), timedelta(days=7))
    assert policy.status({"read-only"}, False, None, NOW).state is MfaState.NOT_REQUIRED
    assert policy.status({"read-only", "Security administrator"}, True, None, NOW).state is MfaState.ENROLLED
    first = policy.status({"full-access"}, False, None, NOW)
    assert first.state is MfaState.GRACE and first.deadline == NOW + timedelta(days=7)
    later = policy.status({"full-access"}, False, NOW, NOW + timedelta(days=6, hours=23))
    assert later.state is MfaState.GRACE
    assert policy.status({"full-access"}, False, NOW, NOW + timedelta(days=7)).state is MfaState.OVERDUE
    assert MfaPolicy(frozenset({"full-access"}), timedelta(0)).status(
        {"full-access"}, False, None, NOW).state is MfaState.OVERDUE


def test_recovery_codes_are_distinct_and_typed_forgivingly() -> None:
    codes = new_recovery_codes()
    assert len(set(codes)) == 10 and all(len(c) == 19 and c.count("-") == 3 for c in codes)
    assert normalize_recovery_code(codes[0].upper().replace("-", " ")) == codes[0].replace("-", "")
