"""The public REST API under /api, with Defender's paths and JSON field names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from vigil.core.alerts import AlertStatus
from vigil.core.devices import health_status
from vigil.core.rbac import Permission
from vigil.core.severity import Severity
from vigil.core.telemetry import TABLES, parse_timestamp
from vigil.deploy.onboarding import create_package, parse_duration
from vigil.server.auth import Principal, issue_token, public, requires, services
from vigil.server.errors import APIError
from vigil.store import alerts as alert_store
from vigil.store import devices as device_store
from vigil.store.schema import device_groups, devices
from vigil.store.telemetry import timeline
from vigil.store.users import verify_login
from vigil.wire import OnboardingPackage

router = APIRouter(prefix="/api", tags=["api"])


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def machine_json(row: Any, group_name: str, now: datetime) -> dict[str, Any]:
    last_seen = device_store.aware(row.last_seen)
    return {
        "id": row.id,
        "computerDnsName": row.computer_dns_name,
        "firstSeen": iso(row.first_seen),
        "lastSeen": iso(row.last_seen),
        "osPlatform": row.os_platform,
        "version": row.os_version,
        "osBuild": row.os_build or None,
        "agentVersion": row.agent_version,
        "lastIpAddress": row.last_ip,
        "lastExternalIpAddress": row.last_external_ip,
        "healthStatus": health_status(last_seen, now, row.offboarded_at is not None).value,
        "machineTags": list(row.tags or []),
        "rbacGroupId": row.group_id,
        "rbacGroupName": group_name,
        "riskScore": "None",
        "exposureLevel": "None",
        "isOffboarded": row.offboarded_at is not None,
        "sensorHealth": row.sensors or {},
        "eventCounters": row.counters or {},
    }


def _machines_query() -> sa.Select[Any]:
    return sa.select(devices, device_groups.c.name.label("group_name")).join(
        device_groups, device_groups.c.id == devices.c.group_id
    )


def list_machines(request: Request) -> list[dict[str, Any]]:
    svc = services(request)
    now = svc.clock.now()
    with svc.engine.connect() as conn:
        rows = conn.execute(_machines_query().order_by(devices.c.computer_dns_name)).all()
    return [machine_json(r, r.group_name, now) for r in rows]


def get_machine(request: Request, machine_id: str) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        row = conn.execute(_machines_query().where(devices.c.id == machine_id)).first()
    if row is None:
        raise APIError(404, "not_found", f"no machine with id {machine_id!r}", field="id")
    return machine_json(row, row.group_name, svc.clock.now())


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


@router.post("/auth/login")
def login(body: LoginBody, request: Request, _: None = public()) -> dict[str, Any]:
    svc = services(request)
    if not svc.login_limiter.allow(request.client.host if request.client else "?"):
        raise APIError(429, "rate_limited", "too many sign-in attempts; wait a minute",
                       headers={"Retry-After": "60"})
    with svc.engine.connect() as conn:
        user = verify_login(conn, body.username, body.password)
    if user is None:
        raise APIError(401, "bad_credentials", "wrong user name or password")
    return {"access_token": issue_token(svc, user), "token_type": "Bearer", "expires_in": 12 * 3600}


@router.get("/health")
def health(request: Request, _: None = public()) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return {"status": "ok", "version": svc.version}


@router.get("/machines")
def machines(request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> dict[str, Any]:
    return {"@odata.context": "/api/$metadata#Machines", "value": list_machines(request)}


@router.get("/machines/{machine_id}")
def machine(
    machine_id: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)
) -> dict[str, Any]:
    return get_machine(request, machine_id)


def _time_arg(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise APIError(422, "invalid_request", f"{name}: not an ISO 8601 time: {value!r}", field=name) from None


def machine_timeline(
    request: Request, machine_id: str, start: datetime | None, end: datetime | None,
    tables: list[str] | None, limit: int,
) -> list[dict[str, Any]]:
    get_machine(request, machine_id)  # 404 for unknown machines, not an empty list
    for t in tables or []:
        if t not in TABLES:
            raise APIError(422, "invalid_request", f"unknown table {t!r}", field="table")
    svc = services(request)
    if start is None and end is None:
        start = svc.clock.now() - timedelta(days=30)  # Defender's timeline default
    with svc.engine.connect() as conn:
        return timeline(conn, machine_id, start, end, tables, limit)


@router.get("/machines/{machine_id}/timeline")
def machine_timeline_api(
    machine_id: str,
    request: Request,
    from_: str | None = Query(default=None, alias="from"),
    to: str | None = None,
    table: list[str] | None = Query(default=None),
    limit: int = Query(default=1000, ge=1, le=10_000),
    _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> dict[str, Any]:
    events = machine_timeline(
        request, machine_id, _time_arg(from_, "from"), _time_arg(to, "to"), table, limit
    )
    for e in events:
        for k, v in e.items():
            if isinstance(v, datetime):
                e[k] = iso(v)
    return {"value": events}


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


class OffboardBody(BaseModel):
    Comment: str = Field(min_length=1, max_length=1000)


@router.post("/machines/{machine_id}/offboard")
def offboard(
    machine_id: str, body: OffboardBody, request: Request,
    _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS),
) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.begin() as conn:
        if not device_store.find_devices(conn, machine_id):
            raise APIError(404, "not_found", f"no machine with id {machine_id!r}", field="id")
        done = device_store.offboard_device(conn, machine_id, svc.clock.now())
    return {"id": machine_id, "type": "Offboard", "status": "Succeeded" if done else "AlreadyOffboarded",
            "requestorComment": body.Comment}


def alert_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "incidentId": row.incident_id,
        "machineId": row.machine_id,
        "title": row.title,
        "description": row.description,
        "severity": row.severity,
        "category": row.category,
        "status": row.status,
        "classification": row.classification,
        "determination": row.determination,
        "investigationState": row.investigation_state,
        "detectionSource": row.detection_source,
        "detectorId": row.rule_id,
        "mitreTechniques": list(row.mitre_techniques or []),
        "assignedTo": row.assigned_to,
        "alertCreationTime": iso(row.alert_creation_time),
        "firstEventTime": iso(row.first_event_time),
        "lastEventTime": iso(row.last_event_time),
        "lastUpdateTime": iso(row.last_update_time),
        "resolvedTime": iso(row.resolved_time),
        "eventCount": row.event_count,
        "evidence": list(row.evidence or []),
    }


def query_alerts(
    request: Request, machine_id: str | None = None, status: str | None = None, severity: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    svc = services(request)
    since = svc.clock.now() - timedelta(days=30)  # Defender's queue shows the last 30 days
    with svc.engine.connect() as conn:
        rows = alert_store.list_alerts(
            conn, machine_id=machine_id, status=status, severity=severity, since=since, limit=limit
        )
    return [alert_json(r) for r in rows]


@router.get("/alerts")
def alerts_api(
    request: Request,
    status: AlertStatus | None = None,
    severity: Severity | None = None,
    machineId: str | None = None,
    top: int = Query(default=1000, alias="$top", ge=1, le=10_000),
    _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> dict[str, Any]:
    value = query_alerts(
        request, machineId, status.value if status else None, severity.value if severity else None, top
    )
    return {"@odata.context": "/api/$metadata#Alerts", "value": value}


@router.get("/alerts/{alert_id}")
def alert_api(alert_id: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> dict[str, Any]:
    return get_alert_json(request, alert_id)


def get_alert_json(request: Request, alert_id: str) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        row = alert_store.get_alert(conn, alert_id)
    if row is None:
        raise APIError(404, "not_found", f"no alert with id {alert_id!r}", field="id")
    return alert_json(row)
