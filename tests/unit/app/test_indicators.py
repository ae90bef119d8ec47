"""The indicators service on the in-memory store: submit or update, scope by device group, batches, audit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil.app import indicators
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.memory import MemoryState, MemoryStore
from vigil.app.principal import Principal
from vigil.core.clock import FixedClock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.rbac import Permission

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CLOCK = FixedClock(NOW)
SHA = "a" * 64


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(MemoryState(groups={DEFAULT_GROUP_NAME: 1, "Lab": 2, "Web": 3}))


def who(groups: frozenset[int] | None = None, manage: bool = True) -> Principal:
    perms = {Permission.VIEW_DATA_SECOPS} | ({Permission.MANAGE_SECURITY_SETTINGS} if manage else set())
    return Principal("ana", frozenset(perms), groups, username="ana")


def body(**kw: object) -> dict[str, object]:
    out: dict[str, object] = {"indicatorValue": SHA.upper(), "indicatorType": "FileSha256", "action": "Block",
                              "title": "dropper"}
    out.update(kw)
    return out


def test_submit_normalizes_then_updates_the_same_value_and_audits_both(store: MemoryStore) -> None:
    made, created = indicators.submit(store, CLOCK, who(), body())
    assert created and made.record.indicator.indicator_value == SHA and made.record.created_by == "ana"
    again, created = indicators.submit(store, CLOCK, who(), body(action="Allowed", rbacGroupNames=["Lab"]))
    assert not created and again.record.indicator.id == made.record.indicator.id
    assert again.record.indicator.action == "Allowed" and again.group_names == ("Lab",)
    entries = store.state.audit
    assert [(e.action, e.target_id) for e in entries] == [("indicator.create", "1"), ("indicator.update", "1")]
    assert entries[1].before["action"] == "Block" and entries[1].after["rbacGroupIds"] == [2]


@pytest.mark.parametrize(("change", "field"), [
    ({"indicatorType": "Sha256"}, "indicatorType"), ({"indicatorValue": "abc"}, "indicatorValue"),
    ({"action": "Deny"}, "action"), ({"title": ""}, "title"), ({"severity": "Urgent"}, "severity"),
    ({"expirationTime": "tomorrow"}, "expirationTime"), ({"expirationTime": "2026-12-01T00:00:00Z"}, "expirationTime"),
    ({"rbacGroupNames": ["Nowhere"]}, "rbacGroupNames"), ({"generateAlert": "yes"}, "generateAlert"),
])
def test_bad_fields_are_refused_by_name_and_nothing_is_stored(store: MemoryStore, change: dict[str, object],
                                                               field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        indicators.submit(store, CLOCK, who(), body(**change))
    assert e.value.field == field
    assert indicators.list_indicators(store, who()) == [] and store.state.audit == []


def test_read_only_and_scoped_callers(store: MemoryStore) -> None:
    with pytest.raises(Forbidden):
        indicators.submit(store, CLOCK, who(manage=False), body())
    lab = who(frozenset({2}))
    with pytest.raises(Forbidden):  # an indicator for every group needs every group
        indicators.submit(store, CLOCK, lab, body())
    with pytest.raises(InvalidInput):
        indicators.submit(store, CLOCK, lab, body(rbacGroupNames=["Web"]))
    everywhere, _ = indicators.submit(store, CLOCK, who(), body(indicatorValue="10.0.0.1", indicatorType="IpAddress"))
    web, _ = indicators.submit(store, CLOCK, who(), body(rbacGroupNames=["Web"]))
    mine, _ = indicators.submit(store, CLOCK, lab, body(indicatorValue="evil.example", indicatorType="DomainName",
                                                        rbacGroupNames=["Lab"]))
    seen = [i.record.indicator.id for i in indicators.list_indicators(store, lab)]
    assert seen == [everywhere.record.indicator.id, mine.record.indicator.id]
    with pytest.raises(NotFound):
        indicators.delete(store, CLOCK, lab, int(web.record.indicator.id or 0))
    with pytest.raises(Forbidden):
        indicators.delete(store, CLOCK, lab, int(everywhere.record.indicator.id or 0))
    indicators.delete(store, CLOCK, lab, int(mine.record.indicator.id or 0))
    assert store.state.audit[-1].action == "indicator.delete"


def test_a_batch_saves_good_rows_and_names_the_bad_ones(store: MemoryStore) -> None:
    rows = [body(), body(indicatorValue="not-hex"), "text", body(indicatorValue="1.2.3.4", indicatorType="IpAddress")]
    results = indicators.import_rows(store, CLOCK, who(), rows)
    assert [(r.index, bool(r.record), r.error.split(":")[0]) for r in results] == [
        (0, True, ""), (1, False, "indicatorValue"), (2, False, "each indicator must be a JSON object"),
        (3, True, "")]
    assert len(indicators.list_indicators(store, who())) == 2


def test_csv_export_imports_back_and_bad_lines_are_numbered(store: MemoryStore) -> None:
    indicators.submit(store, CLOCK, who(), body(rbacGroupNames=["Lab"], expirationTime="2027-01-01T00:00:00Z"))
    text = indicators.export_csv(store, who())
    other = MemoryStore(MemoryState(groups={DEFAULT_GROUP_NAME: 1, "Lab": 2}))
    bad = text + "FileSha1,xyz,,Block,High,t,,,,,,FALSE\n"
    results = indicators.import_csv(other, CLOCK, who(), bad)
    assert next(r.error for r in results) == "" and results[1].error.startswith("line 3: ")
    got = indicators.list_indicators(other, who())[0].record.indicator
    want = indicators.list_indicators(store, who())[0].record.indicator
    assert (got.indicator_value, got.rbac_group_ids, got.expiration_time) == (
        want.indicator_value, want.rbac_group_ids, want.expiration_time)
