"""Onboarding packages: what an endpoint needs to enroll (the onboarding service does the gate and the audit)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from vigil.app import onboarding as app_onboarding
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.auth import Principal, requires, services
from vigil.wire import OnboardingPackage

router = APIRouter()


class OnboardingBody(BaseModel):
    group: str | None = Field(default=None, max_length=128)
    expires: str = Field(default="7d", max_length=16)
    uses: int = Field(default=1, ge=1, le=100_000)
    # An administrator may onboard production devices before every sign-off; the reason is audited.
    override_reason: str | None = Field(default=None, max_length=1000)


def write_package(request: Request, body: OnboardingBody) -> OnboardingPackage:
    """Shared by the API route and the portal's onboarding page; refusals are the service's domain errors."""
    svc = services(request)
    return app_onboarding.write_package(
        edge.store(request), svc.clock, edge.principal(request), app_onboarding.ServerIdentity.of(svc.settings),
        app_onboarding.PackageRequest(body.group, body.expires, body.uses, body.override_reason),
    )


@router.post("/onboarding/packages", response_model=OnboardingPackage)
def onboarding_package(
    body: OnboardingBody, request: Request, _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)
) -> OnboardingPackage:
    with edge.translated():
        return write_package(request, body)
