"""Network protection with real nftables inside a network namespace: Block denies the connect and is reported,
Audit only reports, Allowed wins, an expired indicator stops applying, blocked domains' addresses are blocked,
the Vigil server is never blocked, and isolation's table is left alone."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.netns import MGMT_ADDR, OTHER_ADDR, NetnsLab, netns_lab, require_netns
from vigil.agent.actions.base import ActionSettings
from vigil.agent.protection import TABLE, Protection
from vigil.asr import AsrPolicy, bundle
from vigil.asr.indicators import Indicator, IndicatorAction, IndicatorType

pytestmark = pytest.mark.root
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at, self.mono = NOW, 0.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.mono


class Sink:
    def __init__(self) -> None:
        self.rows: list[Mapping[str, Any]] = []

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.rows.extend(rows)

    def of(self, action: str) -> list[Mapping[str, Any]]:
        return [r for r in self.rows if r["ActionType"] == action]


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    require_netns()
    with netns_lab() as lab:
        yield lab


def _ind(value: str, action: IndicatorAction, kind: IndicatorType = IndicatorType.IP_ADDRESS, n: int = 1,
         expires: datetime | None = None) -> Indicator:
    return Indicator(value, kind, action, f"ind {n}", expiration_time=expires, id=n)


def _bundle(*inds: Indicator) -> dict[str, Any]:
    return bundle.to_json(1, AsrPolicy(), None, inds, "test")


def _protection(lab: NetnsLab, tmp_path: Path, resolver: Any = None) -> tuple[Protection, Clock, Sink]:
    clock, sink = Clock(), Sink()
    settings = ActionSettings(tmp_path, f"https://{MGMT_ADDR}:8443", isolation_netns=lab.ep)
    return Protection(settings, clock, sink, resolver=resolver or (lambda _h: [])), clock, sink


def test_block_audit_allow_and_expiry(lab: NetnsLab, tmp_path: Path) -> None:
    p, clock, sink = _protection(lab, tmp_path)
    summary = p.apply(_bundle(_ind(OTHER_ADDR, IndicatorAction.BLOCK, expires=NOW + timedelta(hours=1))))
    assert summary["blocked"] == [OTHER_ADDR]
    assert not lab.reachable(OTHER_ADDR, 80) and lab.reachable(MGMT_ADDR, 8443)
    p.poll_once()
    blocked = sink.of("ExploitGuardNetworkProtectionBlocked")
    assert [(r["RemoteIP"], r["AdditionalFields"]["IndicatorId"]) for r in blocked] == [(OTHER_ADDR, 1)]
    assert blocked[0]["AdditionalFields"]["Packets"] >= 1

    clock.at = NOW + timedelta(hours=2)  # expired: the next poll drops it
    p.poll_once()
    assert lab.reachable(OTHER_ADDR, 80)

    p.apply(_bundle(_ind(OTHER_ADDR, IndicatorAction.BLOCK), _ind(OTHER_ADDR, IndicatorAction.ALLOWED, n=2)))
    assert lab.reachable(OTHER_ADDR, 80)  # Allowed wins over Block

    sink.rows.clear()
    p.apply(_bundle(_ind(OTHER_ADDR, IndicatorAction.AUDIT)))
    assert lab.reachable(OTHER_ADDR, 80)
    p.poll_once()
    assert [r["RemoteIP"] for r in sink.of("ExploitGuardNetworkProtectionAudited")] == [OTHER_ADDR]
    assert sink.of("ExploitGuardNetworkProtectionBlocked") == []


def test_domains_resolve_to_blocked_addresses_but_never_the_server(lab: NetnsLab, tmp_path: Path) -> None:
    names = {"evil.example": [OTHER_ADDR], "vigil.example": [MGMT_ADDR]}
    p, _, sink = _protection(lab, tmp_path, resolver=lambda host: names.get(host, []))
    summary = p.apply(_bundle(_ind("evil.example", IndicatorAction.BLOCK, IndicatorType.DOMAIN_NAME),
                              _ind("https://vigil.example/agent", IndicatorAction.BLOCK, IndicatorType.URL, n=2)))
    assert summary["blocked"] == [OTHER_ADDR]
    assert not lab.reachable(OTHER_ADDR, 8443) and lab.reachable(MGMT_ADDR, 8443)
    p.poll_once()
    assert sink.of("ExploitGuardNetworkProtectionBlocked")[0]["AdditionalFields"]["RemoteUrl"] == "evil.example"


def test_the_table_is_its_own_and_is_restored_after_a_flush(lab: NetnsLab, tmp_path: Path) -> None:
    p, _, _ = _protection(lab, tmp_path)
    p.apply(_bundle(_ind(OTHER_ADDR, IndicatorAction.BLOCK)))
    assert lab.nft_tables().count(TABLE) == 1 and "vigil_isolation" not in lab.nft_tables()
    lab.run(lab.ep, "nft", "flush", "ruleset")
    assert lab.reachable(OTHER_ADDR, 80)
    again, _, _ = _protection(lab, tmp_path)  # a restarted agent
    assert again.restore() == "protection bundle test"
    assert not lab.reachable(OTHER_ADDR, 80)
