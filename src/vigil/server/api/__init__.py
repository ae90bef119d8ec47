"""The public REST API under /api, with Defender's paths and JSON field names; one module per entity."""

from __future__ import annotations

from fastapi import APIRouter

from vigil.server.api import (
    accounts,
    advancedqueries,
    alerts,
    antivirus,
    applications,
    asr,
    audit,
    detectionrules,
    eventsources,
    experts,
    incidents,
    indicators,
    investigations,
    liveresponse,
    machineactions,
    machinegroups,
    machineidentity,
    machines,
    onboarding,
    plan,
    rbac,
    session,
    streaming,
    suppression,
    tokens,
    tvm,
)

router = APIRouter(prefix="/api", tags=["api"])
# tvm before machines: its /machines/SecureConfigurationsAssessmentByMachine is not a machine id.
_MODULES = (
    session, tvm, machines, machineactions, liveresponse, alerts, incidents, suppression, onboarding, machinegroups,
    rbac, machineidentity, tokens, audit, plan, accounts, advancedqueries, asr, applications, indicators,
    investigations, detectionrules, streaming, experts, eventsources, antivirus,
)
for _module in _MODULES:
    router.include_router(_module.router)
