"""The deployment plan: view, edit, sign off, apply, export; rings and the adoption order."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from vigil.app import rollout
from vigil.core.plan import PlanFormatError, Ring
from vigil.core.rbac import Permission
from vigil.deploy import plan as deployment
from vigil.deploy import plan_file
from vigil.deploy.plan_export import plan_html, plan_markdown
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.auth import Principal, client_ip, requires, services, signed_in
from vigil.server.errors import APIError

router = APIRouter()


def _error(e: Exception) -> APIError:
    if isinstance(e, PlanFormatError):
        return APIError(422, "invalid_plan", str(e), field=e.gaps[0].where if e.gaps else None)
    if isinstance(e, deployment.GateClosed):
        return APIError(409, "signoff_required", str(e), field=e.field)
    if isinstance(e, deployment.PlanError):
        detail = str(e) + ("".join(f"\n- {g}" for g in e.gaps) if e.gaps else "")
        return APIError(409, "plan_rejected", detail, field=e.field)
    raise e


def _device_data_visible(request: Request) -> bool:
    """A Stakeholder sees ring progress as counts; device names and ids need View data – Security operations."""
    who = getattr(request.state, "principal", None)
    return who is None or Permission.VIEW_DATA_SECOPS in who.permissions


def state_json(request: Request) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        st = deployment.state(conn)
        if st is None:
            return {"exists": False, "phase": "Prepare", "gateOpen": True}
        criteria = deployment.ring_criteria(conn, st, svc.clock.now())
        migration = deployment.incumbent_devices(conn, st.plan)
    devices_visible = _device_data_visible(request)
    return {
        "exists": True, "version": st.version, "digest": st.digest, "document": st.document, "phase": st.phase,
        "gateOpen": st.gate_open, "ring": st.ring.value, "componentsEnabled": list(st.components),
        "adoptionOrder": st.plan.adoption_order(), "gaps": [{"where": g.where, "problem": g.problem} for g in st.gaps],
        "warnings": [{"where": g.where, "problem": g.problem} for g in st.warnings],
        "components": deployment.component_rows(st.plan),
        "signoff": {"required": list(st.signoffs.required), "signed": list(st.signoffs.signed),
                    "missing": list(st.signoffs.missing), "complete": st.signoffs.complete},
        "signatures": [{**asdict(s), "signed_at": iso(s.signed_at)} for s in st.signatures],
        "ringCriteria": [{**asdict(c), "failing": list(c.failing) if devices_visible else []} for c in criteria],
        "deviceDataHidden": not devices_visible,
        "ringComponents": st.ring_components,
        "ringComponentResults": st.ring_results,  # each ring's last enable step per component, per device group
        # The migration view: devices still running the incumbent antivirus/EDR, per ring (counts for stakeholders).
        "incumbentDevices": {r: (v if devices_visible else []) for r, v in migration.items()},
        "incumbentDeviceCounts": {r: len(v) for r, v in migration.items()},
        "overrides": [{"at": iso(o.at), "actor": o.actor, "action": o.action, "label": o.label, "target": o.target,
                       "planVersion": o.plan_version, "reason": o.reason} for o in st.overrides],
        "evaluateGroup": st.plan.ring_group(Ring.EVALUATE),
    }


@router.get("/plan")
def get_plan(request: Request, _: Principal = requires(Permission.VIEW_PLAN_REPORTS)) -> dict[str, Any]:
    return state_json(request)


class PlanBody(BaseModel):
    document: str = Field(min_length=1, max_length=1_000_000)


def save_document(request: Request, who: Principal, document: str) -> bool:
    svc = services(request)
    try:
        with svc.engine.begin() as conn:
            _, added = deployment.save(conn, document, who.user.username, svc.clock.now(), client_ip(request))
    except (PlanFormatError, deployment.PlanError) as e:
        raise _error(e) from None
    return added


@router.put("/plan")
def put_plan(body: PlanBody, request: Request, who: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)
             ) -> dict[str, Any]:
    added = save_document(request, who, body.document)
    return {**state_json(request), "newVersion": added}


class InitBody(BaseModel):
    organization: str = Field(default="Example organization", min_length=1, max_length=200)


@router.post("/plan/init")
def init_plan(body: InitBody, request: Request, who: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)
              ) -> dict[str, Any]:
    svc = services(request)
    try:
        with svc.engine.begin() as conn:
            deployment.init(conn, who.user.username, svc.clock.now(), body.organization)
    except deployment.PlanError as e:
        raise _error(e) from None
    return state_json(request)


def sign_current(request: Request, who: Principal) -> None:
    svc = services(request)
    try:
        with svc.engine.begin() as conn:
            deployment.sign(conn, who.user, svc.clock.now(), client_ip(request))
    except deployment.PlanError as e:
        raise _error(e) from None


@router.post("/plan/signoff")
def sign_plan(request: Request, who: Principal = signed_in()) -> dict[str, Any]:
    """Any signed-in user whose e-mail is an SO stakeholder's may sign; a CISO need not hold a role."""
    sign_current(request, who)
    return state_json(request)


class ImportBody(BaseModel):
    file: str = Field(min_length=1, max_length=5_000_000, description="a plan file prepared with `vigil plan --plan`")
    name: str = Field(default="uploaded plan", max_length=200)


def import_file(request: Request, who: Principal, text: str, name: str) -> list[str]:
    """Carry a prepared, signed plan file in (versions and sign-offs), then apply it; all or nothing."""
    svc = services(request)
    now = svc.clock.now()
    try:
        pf = plan_file.parse(text, Path(name))
        with svc.engine.begin() as conn:
            plan_file.import_into(conn, pf, who.user.username, now)
            return deployment.apply(conn, who.user.username, now, client_ip(request))
    except (PlanFormatError, deployment.PlanError) as e:
        raise _error(e) from None


@router.post("/plan/import")
def import_plan(body: ImportBody, request: Request, who: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)
                ) -> dict[str, Any]:
    changes = import_file(request, who, body.file, body.name)
    return {**state_json(request), "changes": changes}


@router.get("/plan/diff")
def plan_diff(request: Request, _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)) -> dict[str, Any]:
    with services(request).engine.connect() as conn:
        st = deployment.state(conn)
        if st is None:
            raise APIError(404, "not_found", "there is no plan")
        return {"changes": deployment.diff(conn, st.plan)}


@router.post("/plan/apply")
def apply_plan(request: Request, who: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)) -> dict[str, Any]:
    svc = services(request)
    try:
        with svc.engine.begin() as conn:
            changes = deployment.apply(conn, who.user.username, svc.clock.now(), client_ip(request))
    except deployment.PlanError as e:
        raise _error(e) from None
    return {"changes": changes}


@router.get("/plan/export")
def export_plan(
    request: Request, format: str = Query(default="md", pattern="^(md|html|yaml)$"),
    _: Principal = requires(Permission.VIEW_PLAN_REPORTS),
) -> Response:
    with services(request).engine.connect() as conn:
        st = deployment.state(conn)
    if st is None:
        raise APIError(404, "not_found", "there is no plan")
    if format == "html":
        return HTMLResponse(plan_html(st))
    return PlainTextResponse(plan_markdown(st) if format == "md" else st.document)


class OverrideBody(BaseModel):
    override_reason: str | None = Field(default=None, max_length=1000)


@router.post("/rings/promote")
def promote_ring(body: OverrideBody, request: Request, who: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)
                 ) -> dict[str, Any]:
    if body.override_reason and not who.is_admin:
        raise APIError(403, "forbidden", "only an administrator may override exit criteria", field="override_reason")
    svc = services(request)
    try:
        with svc.engine.begin() as conn:
            ring = deployment.promote(conn, who.user.username, svc.clock.now(), body.override_reason,
                                      client_ip(request))
    except deployment.PlanError as e:
        raise _error(e) from None
    return {"ring": ring.value}


class NextComponentBody(BaseModel):
    ring: Ring | None = None  # the current ring when absent
    override_reason: str | None = Field(default=None, max_length=1000)  # past the previous ring's criteria


def enable_next(request: Request, ring: Ring | None, override_reason: str | None) -> dict[str, Any]:
    """Through vigil.app.rollout: the gates, the component's policy pushed to the ring's device groups, audited."""
    with edge.translated():
        done = rollout.enable_next(edge.store(request), services(request).clock, edge.principal(request), ring,
                                   override_reason)
    st = state_json(request)
    return {**done.as_json(), "ringComponents": st.get("ringComponents", {}),
            "componentsEnabled": st.get("componentsEnabled", [])}


@router.post("/plan/components/next")
def next_component(request: Request, body: NextComponentBody | None = None,
                   _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)) -> dict[str, Any]:
    """Step the ring's next component (Audit/passive first, then on) and push its policy to the ring's device
    groups; each group's outcome is in ``groups`` (``failed`` with the error). Refused for a component not built
    yet, out of the adoption order, or past the previous ring's unmet criteria without an administrator's reason.
    """
    return enable_next(request, body.ring if body else None, body.override_reason if body else None)
