"""The audit log: newest first, exportable as JSON lines or CSV, and its hash chain verifiable."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from vigil.app import audit as app_audit
from vigil.app.ports import LoggedAudit
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.app_edge import translated
from vigil.server.auth import Principal, requires

router = APIRouter()
FIELDS = ["seq", "at", "actor", "source_ip", "action", "target_type", "target_id", "before", "after", "reason",
          "prev_hash", "hash"]


class AuditLogEntry(BaseModel):
    """One audit record with its place in the hash chain."""

    seq: int
    at: str
    actor: str
    source_ip: str | None
    action: str
    target_type: str
    target_id: str
    before: Any
    after: Any
    reason: str | None
    prev_hash: str
    hash: str


class AuditLog(BaseModel):
    value: list[AuditLogEntry]


class ChainVerification(BaseModel):
    """``ok`` with the number of entries checked, or the first broken entry and why."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None


def entry_of(e: LoggedAudit) -> AuditLogEntry:
    return AuditLogEntry(**{**asdict(e.entry), "at": iso(e.entry.at), "hash": e.hash})


def recent(request: Request, action: str | None = None, limit: int = 200) -> list[AuditLogEntry]:
    """The newest entries through the audit service (the portal's audit page reads them too)."""
    with translated():
        return [entry_of(e) for e in app_audit.recent(edge.store(request), edge.principal(request), action, limit)]


@router.get("/audit", response_model=AuditLog)
def audit_log(
    request: Request, action: str | None = None, top: int = Query(default=200, alias="$top", ge=1, le=10_000),
    _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS),
) -> AuditLog:
    return AuditLog(value=recent(request, action, top))


@router.get("/audit/verify", response_model=ChainVerification)
def verify(request: Request, _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)) -> ChainVerification:
    with translated():
        report = app_audit.verify(edge.store(request), edge.principal(request))
    return ChainVerification(**asdict(report))


@router.get("/audit/export")
def export(
    request: Request, format: str = Query(default="jsonl", pattern="^(jsonl|csv)$"),
    _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS),
) -> StreamingResponse:
    with translated():
        entries = app_audit.export(edge.store(request), edge.principal(request))

    def rows() -> Iterator[dict[str, Any]]:
        for e in entries:
            yield entry_of(e).model_dump()

    def jsonl() -> Iterator[bytes]:
        for r in rows():
            yield (json.dumps(r, ensure_ascii=False) + "\n").encode()

    def as_csv() -> Iterator[bytes]:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=FIELDS)
        w.writeheader()
        for r in rows():
            w.writerow({k: json.dumps(r[k]) if k in ("before", "after") else r[k] for k in FIELDS})
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
        yield buf.getvalue().encode()

    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(jsonl() if format == "jsonl" else as_csv(), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="vigil-audit.{format}"'})
