"""GET /metrics: per-device event-loss counters (from heartbeats) and ingest counters, Prometheus text format.

Guard: the scrape token (`metrics_token`, or `<data dir>/pki/metrics.token` written at set-up) as a
bearer token sees every device; an analyst bearer token with "View data – Security operations" sees
its device groups. The client's address opens nothing: behind a proxy, or with a forged
X-Forwarded-For, every caller can look local.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request, Response

from vigil.core.rbac import Permission
from vigil.server.auth import PERMISSION_ATTR, current_principal, services
from vigil.server.errors import APIError
from vigil.store.devices import aware
from vigil.store.schema import devices, telemetry_batches
from vigil.wire import TELEMETRY_PATH

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GUARD = f"scrape token, or {Permission.VIEW_DATA_SECOPS}"

router = APIRouter()


def _is_scrape_token(sent: str, expected: str) -> bool:
    # Compared as bytes in constant time; an empty expected token (none configured) matches nothing.
    return bool(expected) and secrets.compare_digest(sent.encode(), expected.encode())


def metrics_guard() -> Any:
    """The scrape token passes; otherwise the caller must hold VIEW_DATA_SECOPS (declared for the route walker)."""

    def check(request: Request) -> frozenset[int] | None:
        """The device groups the caller may see (None: all)."""
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer " and _is_scrape_token(header[7:].strip(),
                                                               services(request).settings.scrape_token()):
            return None
        principal = current_principal(request)
        if principal is None:
            raise APIError(401, "unauthenticated", "/metrics needs the scrape token or an analyst bearer token",
                           headers={"WWW-Authenticate": "Bearer"})
        if Permission.VIEW_DATA_SECOPS not in principal.permissions:
            raise APIError(403, "forbidden", f"this needs the permission '{Permission.VIEW_DATA_SECOPS}'")
        # Scoped analysts see only their device groups (absent on principals without scoping).
        groups = getattr(principal, "device_group_ids", None)
        return None if groups is None else frozenset(groups)

    setattr(check, PERMISSION_ATTR, GUARD)
    return Depends(check)


class IngestCounters:
    """Telemetry requests by HTTP status, counted by a middleware (since this server started)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_status: Counter[int] = Counter()

    def add(self, status: int) -> None:
        with self._lock:
            self.by_status[status] += 1

    def snapshot(self) -> dict[int, int]:
        with self._lock:
            return dict(self.by_status)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: object) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


class _Family:
    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        self.name = name

    def add(self, value: float, **labels: object) -> None:
        self.lines.append(f"{self.name}{_labels(**labels) if labels else ''} {value:g}")


def render(device_rows: Iterable[Any], ingested: dict[str, tuple[int, int]], requests: dict[int, int],
           rejected: dict[str, int] | None = None) -> str:
    """The exposition text; pure, so the format is tested without a server."""
    per_state = {
        state: _Family(f"vigil_agent_events_{state}_total", "counter", f"Events the agent reports as {state}.")
        for state in ("produced", "spooled", "sent", "acknowledged")
    }
    dropped = _Family("vigil_agent_events_dropped_total", "counter", "Events the agent dropped, by reason.")
    pending = _Family("vigil_agent_events_pending", "gauge",
                      "Events spooled on the agent and neither acknowledged nor dropped.")
    seen = _Family("vigil_agent_last_seen_timestamp_seconds", "gauge", "Last heartbeat or batch from the device.")
    sensors = _Family("vigil_agent_sensor_active", "gauge", "1 when the sensor reports active, else 0.")
    stored = _Family("vigil_server_ingested_events_total", "counter", "Events the server stored, per device.")
    batches = _Family("vigil_server_ingested_batches_total", "counter", "Batches the server stored, per device.")
    http = _Family("vigil_server_telemetry_requests_total", "counter",
                   "Telemetry requests by HTTP status since the server started.")
    for row in device_rows:
        ids = {"device_id": row.id, "device_name": row.computer_dns_name}
        counters = row.counters or {}
        for state, family in per_state.items():
            family.add(int(counters.get(state, 0)), **ids)
        drops = counters.get("dropped") or {}
        for reason, n in sorted(drops.items()):
            dropped.add(int(n), **ids, reason=reason)
        # Rows dropped after spooling (spool full, rejected) left the spool; ones dropped before never entered.
        after_spool = sum(int(v) for k, v in drops.items() if k in ("spool_full", "rejected_by_server"))
        pending.add(max(int(counters.get("spooled", 0)) - int(counters.get("acknowledged", 0)) - after_spool, 0),
                    **ids)
        seen.add(aware(row.last_seen).timestamp(), **ids)
        for name, state in sorted((row.sensors or {}).items()):
            sensors.add(1 if str(state).startswith("active") else 0, **ids, sensor=name)
        events, n_batches = ingested.get(row.id, (0, 0))
        stored.add(events, **ids)
        batches.add(n_batches, **ids)
    for status, n in sorted(requests.items()):
        http.add(n, status=status)
    refused = _Family("vigil_ingest_rejected_rows_total", "counter",
                      "Telemetry rows refused by validation since the server started, by table.")
    for table, n in sorted((rejected or {}).items()):
        refused.add(n, table=table)
    families = [*per_state.values(), dropped, pending, seen, sensors, stored, batches, http, refused]
    return "\n".join(line for f in families for line in f.lines) + "\n"


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, groups: frozenset[int] | None = metrics_guard()) -> Response:
    svc = services(request)
    query = sa.select(devices).order_by(devices.c.id)
    if groups is not None:
        query = query.where(devices.c.group_id.in_(groups))
    with svc.engine.connect() as conn:
        rows = conn.execute(query).all()
        totals = conn.execute(
            sa.select(telemetry_batches.c.device_id, sa.func.sum(telemetry_batches.c.event_count),
                      sa.func.count()).group_by(telemetry_batches.c.device_id)
        ).all()
    ingested = {t[0]: (int(t[1] or 0), int(t[2])) for t in totals}
    # Server-wide request counts are not per device; scoped callers see only their devices' series.
    requests = request.app.state.ingest_counters.snapshot() if groups is None else {}
    rejected = svc.ingest.rejected_rows.snapshot() if groups is None else {}
    return Response(render(rows, ingested, requests, rejected), media_type=CONTENT_TYPE)


def install(app: FastAPI) -> None:
    """Add /metrics and the middleware that counts telemetry requests by status."""
    counters = app.state.ingest_counters = IngestCounters()

    @app.middleware("http")
    async def count_telemetry(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if request.url.path == TELEMETRY_PATH:
            counters.add(response.status_code)
        return response

    app.include_router(router)
