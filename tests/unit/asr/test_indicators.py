"""Indicator matching: allow wins over block, an expired indicator stops applying, group scope, normalization."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.asr.indicators import Indicator, IndicatorAction, IndicatorSet, IndicatorType, Observation, normalize

NOW = datetime(2026, 12, 7, tzinfo=UTC)
SHA = "a" * 64
A, B = IndicatorAction, IndicatorType


def ind(kind: IndicatorType, value: str, action: IndicatorAction, **kw: object) -> Indicator:
    return Indicator(value, kind, action, title=f"{action} {value}", **kw)  # type: ignore[arg-type]


def test_block_matches_and_allowed_wins() -> None:
    s = IndicatorSet([ind(B.FILE_SHA256, SHA.upper(), A.BLOCK)])
    v = s.verdict(Observation(sha256=SHA), NOW, None)
    assert v is not None and v.action is A.BLOCK
    assert s.verdict(Observation(sha256="b" * 64), NOW, None) is None
    s = IndicatorSet([ind(B.FILE_SHA256, SHA, A.BLOCK_AND_REMEDIATE), ind(B.FILE_SHA256, SHA, A.ALLOWED)])
    v = s.verdict(Observation(sha256=SHA), NOW, None)
    assert v is not None and v.action is A.ALLOWED and len(v.matched) == 2
    s = IndicatorSet([ind(B.DOMAIN_NAME, "evil.example", A.BLOCK), ind(B.URL, "https://a.evil.example/x", A.ALLOWED)])
    assert s.verdict(Observation(url="https://a.evil.example/x"), NOW, None).action is A.ALLOWED  # type: ignore[union-attr]
    assert s.verdict(Observation(url="https://b.evil.example/"), NOW, None).action is A.BLOCK  # type: ignore[union-attr]
    assert s.verdict(Observation(domain="notevil.example"), NOW, None) is None


def test_strongest_action_wins_without_an_allow() -> None:
    s = IndicatorSet([ind(B.IP_ADDRESS, "10.0.0.5", A.AUDIT), ind(B.IP_ADDRESS, "10.0.0.5", A.WARN)])
    assert s.verdict(Observation(ip="10.0.0.5"), NOW, None).action is A.WARN  # type: ignore[union-attr]
    s = IndicatorSet([ind(B.IP_ADDRESS, "2001:db8:0::1", A.BLOCK)])
    assert s.verdict(Observation(ip="2001:db8::1"), NOW, None).action is A.BLOCK  # type: ignore[union-attr]


def test_expired_stops_applying_and_group_scope() -> None:
    s = IndicatorSet([ind(B.FILE_MD5, "c" * 32, A.BLOCK, expiration_time=NOW + timedelta(hours=1))])
    assert s.verdict(Observation(md5="c" * 32), NOW, None) is not None
    assert s.verdict(Observation(md5="c" * 32), NOW + timedelta(hours=1), None) is None
    # an expired allow no longer overrides a block
    s = IndicatorSet([ind(B.FILE_SHA1, "d" * 40, A.BLOCK),
                      ind(B.FILE_SHA1, "d" * 40, A.ALLOWED, expiration_time=NOW - timedelta(seconds=1))])
    assert s.verdict(Observation(sha1="d" * 40), NOW, None).action is A.BLOCK  # type: ignore[union-attr]
    s = IndicatorSet([ind(B.FILE_SHA1, "d" * 40, A.BLOCK, rbac_group_ids=(3,))])
    assert s.verdict(Observation(sha1="d" * 40), NOW, 3) is not None
    assert s.verdict(Observation(sha1="d" * 40), NOW, 4) is None
    assert s.verdict(Observation(sha1="d" * 40), NOW, None) is None


@pytest.mark.parametrize(("kind", "value", "message"), [
    (B.FILE_SHA256, "abc", "64 hex digits"), (B.FILE_MD5, "z" * 32, "32 hex digits"),
    (B.IP_ADDRESS, "300.1.1.1", "not an IPv4"), (B.DOMAIN_NAME, "no_domain", "not a domain"),
    (B.URL, "http://", "no host"),
])
def test_bad_values_are_refused_with_a_clear_error(kind: IndicatorType, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize(kind, value)
    with pytest.raises(ValueError, match=message):
        IndicatorSet([ind(kind, value, A.BLOCK)])


def test_csv_round_trip_in_defenders_template_columns() -> None:
    from vigil.asr.indicators import CSV_COLUMNS, from_csv, to_csv

    items = [ind(B.FILE_SHA256, SHA, A.BLOCK, severity="High", expiration_time=NOW, rbac_group_ids=(1, 2),
                 generate_alert=True, description="a, quoted \"one\""),
             ind(B.DOMAIN_NAME, "evil.example", A.ALLOWED)]
    text = to_csv(items)
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert from_csv(text) == items
    with pytest.raises(ValueError, match="line 2: Action 'Nuke'"):
        from_csv("IndicatorType,IndicatorValue,Action,Title\nFileMd5," + "c" * 32 + ",Nuke,t\n")
    with pytest.raises(ValueError, match="line 3: FileSha1 indicatorValue"):
        from_csv("IndicatorType,IndicatorValue,Action,Title\nFileMd5," + "c" * 32 + ",Block,t\nFileSha1,x,Block,t\n")
    with pytest.raises(ValueError, match="lacks the column"):
        from_csv("Type,Value\nFileMd5,x\n")
