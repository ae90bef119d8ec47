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

from vigil.core.audit import AuditEntry
from vigil.core.rbac import Permission
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services
from vigil.store import audit

router = APIRouter()
FIELDS = ["seq", "at", "actor", "source_ip", "action", "target_type", "target_id", "before", "after", "reason",
          "prev_hash", "hash"]


def entry_json(e: AuditEntry, digest: str) -> dict[str, Any]:
    return {**asdict(e), "at": iso(e.at), "hash": digest}


def recent(request: Request, action: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    with services(request).engine.connect() as conn:
        return [entry_json(e, h) for e, h in audit.entries(conn, action=action, limit=limit, newest_first=True)]


@router.get("/audit")
def audit_log(
    request: Request, action: str | None = None, top: int = Query(default=200, alias="$top", ge=1, le=10_000),
    _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS),
) -> dict[str, Any]:
    return {"value": recent(request, action, top)}


@router.get("/audit/verify")
def verify(request: Request, _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)) -> dict[str, Any]:
    with services(request).engine.connect() as conn:
        report = audit.verify(conn)
    return asdict(report)


@router.get("/audit/export")
def export(
    request: Request, format: str = Query(default="jsonl", pattern="^(jsonl|csv)$"),
    _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS),
) -> StreamingResponse:
    engine = services(request).engine

    def rows() -> Iterator[dict[str, Any]]:
        with engine.connect() as conn:
            for e, h in audit.iter_all(conn):
                yield entry_json(e, h)

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
