"""Builds the server's ASGI application from settings: the composition root of `vigil server`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI

import vigil
from vigil.app.stores import sql_store
from vigil.config import Settings
from vigil.content.store import ContentError, ContentStore, content_root
from vigil.core.clock import Clock, SystemClock
from vigil.server import (
    agent_actions,
    agent_api,
    api,
    av_agent,
    errors,
    headers,
    portal,
    shippers,
)
from vigil.server.air_worker import air_worker
from vigil.server.api import tvm as tvm_api
from vigil.server.detection import LiveDetection, device_group_lookup, load_ruleset
from vigil.server.detection_scheduler import detection_scheduler
from vigil.server.ingest import IngestPipeline
from vigil.server.metrics import install as install_metrics
from vigil.server.portal import web as portal_web
from vigil.server.protection_alerts import ProtectionAlerts
from vigil.server.proxies import ProxyHeadersMiddleware, TrustedProxies
from vigil.server.retention import retention_worker
from vigil.server.services import RateLimiter, Services
from vigil.server.streaming import stream_worker
from vigil.server.workers import Worker
from vigil.store import db


def _content_groups(content: ContentStore) -> list[str]:
    """The device groups with content settings of their own (each gets its rule set); none if the store is
    unreadable (load_ruleset logs why)."""
    try:
        return content.groups()
    except ContentError:
        return []


def create_app(
    settings: Settings,
    *,
    engine: sa.Engine | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    clock = clock or SystemClock()
    engine = engine or db.make_engine(settings.db_url)
    db.upgrade(engine)
    placeholders = Path(settings.rule_placeholders) if settings.rule_placeholders else None
    content = ContentStore(content_root(settings.data_dir))
    rulesets = {g: load_ruleset(settings.rule_paths, placeholders, content, g) for g in _content_groups(content)}
    protection = ProtectionAlerts(sql_store(engine), clock)  # ASR blocks and indicator matches become alerts
    detection = LiveDetection(load_ruleset(settings.rule_paths, placeholders, content), rulesets,
                              device_group_lookup(engine), protection)
    svc = Services(
        settings=settings,
        engine=engine,
        clock=clock,
        secret_key=settings.secret_key_file.read_bytes(),
        ingest=IngestPipeline(engine, clock, detection),
        enroll_limiter=RateLimiter(settings.enroll_rate_per_minute),
        version=vigil.__version__,
    )
    svc.ingest.after_store.append(protection.after_store)  # Warn overrides reported by devices, audited
    tvm = tvm_api.attach(svc)  # each stored batch's software inventory rows are applied, weaknesses recomputed
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        workers: list[Worker] = [retention_worker(svc), air_worker(svc), stream_worker(svc), detection_scheduler(svc)]
        for w in workers:
            w.start()
        try:
            yield
        finally:
            for w in reversed(workers):
                w.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Vigil",
        version=vigil.__version__,
        description="Vigil's REST API: Defender for Endpoint's paths and field names, self-hosted.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # served by headers.install_api_docs, with its own CSP
        swagger_ui_oauth2_redirect_url=None,
        redoc_url=None,
    )
    app.state.services = svc
    app.state.tvm = tvm
    app.state.protection_alerts = protection  # the indicator routes drop its cache on a change
    errors.install(app, errors.HtmlErrors(portal_web.wants_html, portal_web.error_page))  # pages for people
    app.include_router(agent_api.router)
    app.include_router(agent_actions.router)
    app.include_router(av_agent.router)
    app.include_router(api.router)
    app.include_router(api.applications.token_router)  # /oauth2/v2.0/token, where Defender scripts post
    app.include_router(shippers.router)  # /ingest/v1/windows: Winlogbeat, Fluent Bit, EVTX uploads
    portal.install(app)  # the portal's pages and its /static files
    install_metrics(app)  # GET /metrics: the scrape token, or an analyst token
    headers.install_api_docs(app, "/api/docs")
    headers.install(app)
    # Added last, so it runs first: every middleware and route sees the client a trusted proxy reported, or the peer.
    app.add_middleware(ProxyHeadersMiddleware, proxies=TrustedProxies(settings.trusted_proxies))
    return app
