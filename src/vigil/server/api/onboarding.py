"""Onboarding packages: what an endpoint needs to enroll."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from vigil.core.rbac import Permission
from vigil.deploy.onboarding import create_package, parse_duration
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.store import devices as device_store
from vigil.wire import OnboardingPackage

router = APIRouter()


class OnboardingBody(BaseModel):
    group: str | None = Field(default=None, max_length=128)
    expires: str = Field(default="7d", max_length=16)
    uses: int = Field(default=1, ge=1, le=100_000)


@router.post("/onboarding/packages", response_model=OnboardingPackage)
def onboarding_package(
    body: OnboardingBody, request: Request, who: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)
) -> OnboardingPackage:
    svc = services(request)
    try:
        lifetime = parse_duration(body.expires)
        with svc.engine.begin() as conn:
            return create_package(
                conn, svc.settings, group=body.group, lifetime=lifetime, uses=body.uses,
                created_by=who.user.username, now=svc.clock.now(),
            )
    except device_store.NotFound as e:
        raise APIError(404, "not_found", str(e), field="group") from None
    except ValueError as e:
        raise APIError(422, "invalid_request", str(e), field="expires") from None
