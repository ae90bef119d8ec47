"""Onboarding packages: the plan's sign-off gate and rings, an enrollment token, the package, its audit record."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.app.errors import GateClosed, InvalidInput, NotFound
from vigil.app.ports import AuditRecord, UnitOfWork
from vigil.app.ports import Store as StorePort
from vigil.app.principal import Principal
from vigil.config import Settings
from vigil.core.clock import Clock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.plan import Ring
from vigil.core.rbac import Permission
from vigil.deploy.onboarding import MAX_TOKEN_LIFETIME, parse_duration
from vigil.deploy.pki import cert_sha256
from vigil.deploy.signing import public_key
from vigil.store import errors as store_errors
from vigil.wire import OnboardingPackage


@dataclass(frozen=True)
class ServerIdentity:
    """What a package tells an endpoint about the server: where it is, its CA and its action-signing key."""

    url: str
    ca_cert_pem: str
    ca_sha256: str
    action_public_key: str | None

    @classmethod
    def of(cls, settings: Settings) -> ServerIdentity:
        pem = settings.ca_cert.read_bytes()
        return cls(settings.url, pem.decode(), cert_sha256(pem), public_key(settings))


@dataclass(frozen=True)
class PackageRequest:
    group: str | None = None
    expires: str = "7d"
    uses: int = 1
    # An administrator may onboard production devices before every sign-off; the reason is audited.
    override_reason: str | None = None


def _gate(uow: UnitOfWork, who: Principal, group: str | None, override: str | None) -> AuditRecord | None:
    """Until every stakeholder signed the current plan, packages may target only the Evaluate ring.

    Returns the override's audit record when an administrator passed the closed gate with a reason.
    Without a plan (an evaluation install, `vigil up`) there is nothing to gate yet.
    """
    gate = uow.plan.gate()
    if gate is None or gate.signed_off:
        return None
    evaluate = gate.ring_groups.get(Ring.EVALUATE)
    if group is not None and group == evaluate:
        return None
    target = group or DEFAULT_GROUP_NAME
    if override and override.strip():
        if not who.is_admin:
            raise GateClosed("only an administrator may override the sign-off gate", field="override_reason")
        return AuditRecord(
            who.actor,
            "onboarding.gate_override",
            "device_group",
            target,
            after={"plan_version": gate.version, "missing": list(gate.missing)},
            reason=override.strip(),
            source_ip=who.source_ip,
        )
    raise GateClosed(
        f"production onboarding is gated: plan version {gate.version} lacks sign-off from "
        f"{', '.join(gate.missing) or 'its stakeholders'}; target the Evaluate ring ({evaluate!r}) "
        "or give an administrator override reason",
        field="group",
    )


def write_package(
    store: StorePort, clock: Clock, who: Principal, server: ServerIdentity, req: PackageRequest
) -> OnboardingPackage:
    """An onboarding package for ``req.group``, through the sign-off gate; the token and audit commit together."""
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    try:
        lifetime = parse_duration(req.expires)
    except ValueError as e:
        raise InvalidInput(str(e), field="expires") from None
    if lifetime > MAX_TOKEN_LIFETIME:
        raise InvalidInput(f"an enrollment token may live at most {MAX_TOKEN_LIFETIME.days} days", field="expires")
    if not 1 <= req.uses <= 100_000:
        raise InvalidInput("uses must be between 1 and 100000", field="uses")
    now = clock.now()
    with store.begin() as uow:
        try:
            gid = uow.devices.group_id(req.group, now)
        except store_errors.NotFound:
            gid = None
        if gid is None or not who.sees_group(gid):
            raise NotFound(f"no device group named {req.group!r}", field="group")
        override = _gate(uow, who, req.group, req.override_reason)
        if override is not None:
            uow.audit.append(override, now)
        issued = uow.enrollment.issue(
            group=req.group, expires_at=now + lifetime, max_uses=req.uses, created_by=who.username or who.actor, now=now
        )
        uow.audit.append(
            AuditRecord(
                who.actor,
                "onboarding.package",
                "device_group",
                issued.group,
                after={"expires_at": issued.expires_at.isoformat(), "uses": req.uses},
                source_ip=who.source_ip,
            ),
            now,
        )
    pem = server.ca_cert_pem
    return OnboardingPackage(
        server_url=server.url,
        ca_cert_pem=pem,
        ca_sha256=server.ca_sha256,
        token=issued.token,
        group=issued.group,
        expires_at=issued.expires_at,
        action_public_key=server.action_public_key,
    )
