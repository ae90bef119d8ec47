"""Onboarding packages: what an endpoint needs to enroll."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from vigil.core.rbac import Permission
from vigil.deploy.onboarding import create_package, parse_duration
from vigil.deploy.plan import GateClosed, check_onboarding
from vigil.server.auth import Principal, client_ip, requires, services
from vigil.server.errors import APIError
from vigil.server.scope import change, visible_group_ids
from vigil.store import audit
from vigil.store import devices as device_store
from vigil.wire import OnboardingPackage

router = APIRouter()


class OnboardingBody(BaseModel):
    group: str | None = Field(default=None, max_length=128)
    expires: str = Field(default="7d", max_length=16)
    uses: int = Field(default=1, ge=1, le=100_000)
    # An administrator may onboard production devices before every sign-off; the reason is audited.
    override_reason: str | None = Field(default=None, max_length=1000)


@router.post("/onboarding/packages", response_model=OnboardingPackage)
def onboarding_package(
    body: OnboardingBody, request: Request, who: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)
) -> OnboardingPackage:
    svc = services(request)
    try:
        lifetime = parse_duration(body.expires)
        now = svc.clock.now()
        with svc.engine.begin() as conn:
            gid = device_store.group_id_by_name(conn, body.group, now)
            visible = visible_group_ids(who)
            if visible is not None and gid not in visible:
                raise device_store.NotFound(f"no device group named {body.group!r}")
            check_onboarding(conn, body.group, actor=who.user.username, is_admin=who.is_admin,
                             override_reason=body.override_reason, now=now, ip=client_ip(request))
            pkg = create_package(
                conn, svc.settings, group=body.group, lifetime=lifetime, uses=body.uses,
                created_by=who.user.username, now=now,
            )
            audit.append(conn, change(request, "onboarding.package", "device_group", pkg.group or "",
                                      after={"expires_at": pkg.expires_at.isoformat(), "uses": body.uses}), now)
            return pkg
    except GateClosed as e:
        raise APIError(409, "signoff_required", str(e), field=e.field) from None
    except device_store.NotFound as e:
        raise APIError(404, "not_found", str(e), field="group") from None
    except ValueError as e:
        raise APIError(422, "invalid_request", str(e), field="expires") from None
