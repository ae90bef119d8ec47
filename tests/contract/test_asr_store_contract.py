"""The ASR store port (indicators, ASR policies) on SQLite, PostgreSQL and the in-memory fake."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from vigil.app.ports import Store
from vigil.asr import AsrMode, AsrPolicy, Exclusion
from vigil.asr.indicators import Indicator, IndicatorAction, IndicatorType
from vigil.core.devices import DEFAULT_GROUP_NAME

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_indicators_are_saved_replaced_by_type_and_value_and_deleted(store: Store) -> None:
    sha = Indicator("b" * 64, IndicatorType.FILE_SHA256, IndicatorAction.BLOCK, "t", "d", "High",
                    NOW + timedelta(days=1), (1,), True, extra={"RecommendedActions": "wipe"})
    ip = Indicator("10.1.2.3", IndicatorType.IP_ADDRESS, IndicatorAction.AUDIT, "ip")
    with store.begin() as uow:
        first, new = uow.asr.save_indicator(sha, "ana", NOW)
        second, _ = uow.asr.save_indicator(ip, "ana", NOW)
        assert new and first != second
        again, new = uow.asr.save_indicator(replace(sha, action=IndicatorAction.ALLOWED), "ben", NOW + timedelta(1))
        assert (again, new) == (first, False)
        got = {r.indicator.id: r for r in uow.asr.indicators()}
        assert got[first].indicator == replace(sha, action=IndicatorAction.ALLOWED, id=first)
        assert got[first].indicator.extra == {"RecommendedActions": "wipe"}
        assert (got[first].created_by, got[first].last_updated_by, got[first].last_update_time) == (
            "ana", "ben", NOW + timedelta(1))
        default = uow.devices.group_id(None, NOW)
        assert uow.asr.group_names()[default] == DEFAULT_GROUP_NAME
        assert uow.asr.delete_indicator(second) and not uow.asr.delete_indicator(second)
        assert [r.indicator.id for r in uow.asr.indicators()] == [first]


def test_asr_policies_are_versioned_per_group_and_the_default_comes_first(store: Store) -> None:
    guid = "526f17ee-978f-439f-985b-be868343db39"
    policy = AsrPolicy({guid: AsrMode.BLOCK}, (Exclusion("/opt/*"),), {guid: (Exclusion("gcc", "process"),)})
    with store.begin() as uow:
        assert uow.asr.save_policy(7, policy, "ana", NOW) == 1
        assert uow.asr.save_policy(None, AsrPolicy({guid: AsrMode.AUDIT}), "ana", NOW) == 1
        assert uow.asr.save_policy(7, replace(policy, exclusions=()), "ben", NOW) == 2
    with store.begin() as uow:
        got = uow.asr.policies()
        assert [(p.group_id, p.version, p.updated_by) for p in got] == [(None, 1, "ana"), (7, 2, "ben")]
        assert got[1].policy == replace(policy, exclusions=())
        assert uow.asr.delete_policy(7) and not uow.asr.delete_policy(7)
        assert [p.group_id for p in uow.asr.policies()] == [None]
