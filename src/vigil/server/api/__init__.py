"""The public REST API under /api, with Defender's paths and JSON field names; one module per entity."""

from __future__ import annotations

from fastapi import APIRouter

from vigil.server.api import alerts, incidents, machines, onboarding, session, suppression

router = APIRouter(prefix="/api", tags=["api"])
for _module in (session, machines, alerts, incidents, suppression, onboarding):
    router.include_router(_module.router)
