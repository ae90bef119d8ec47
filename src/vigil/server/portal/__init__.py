"""The web portal: server-rendered pages over the same services as the API, one module per area.

Each area (dashboard, devices, alerts, incidents, actions, plan, settings, content, account, signin, sso) has its
module here and its templates in ``templates/<area>/``; ``templates/layout/`` holds the shared base page and the
component macros, ``web`` the page guard, the form CSRF check and the refusal page, ``static/`` the portal's scripts
and styles, ``assets/`` the npm libraries it serves. A new component adds its module and template folder, and its
router to ``ROUTERS``.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from vigil.server.portal import (
    access,
    account,
    actions,
    alerts,
    antivirus,
    asr,
    content,
    dashboard,
    devices,
    experts,
    hunting,
    incidents,
    investigations,
    liveresponse,
    plan,
    search,
    settings,
    signin,
    sso,
    tuning,
    tvm,
)
from vigil.server.portal.web import STATIC_DIR, VENDOR_DIR

log = logging.getLogger("vigil.server")

ROUTERS: tuple[APIRouter, ...] = (
    dashboard.router, signin.router, devices.router, alerts.router, incidents.router, actions.router, plan.router,
    settings.router, content.router, sso.router, account.router, tuning.router, access.router,
    liveresponse.router,
    asr.router,
    tvm.router,
    antivirus.router,
    investigations.router,
    experts.router,
    hunting.router,
    search.router,
)


def install(app: FastAPI) -> None:
    """The portal's pages, its static files under /static, and the npm libraries it uses under /static/vendor."""
    for router in ROUTERS:
        app.include_router(router)
    if not VENDOR_DIR.is_dir():
        log.warning("portal: %s is missing, so the dashboard draws no charts: run make install", VENDOR_DIR)
    # Mounted before /static, which would otherwise take its paths.
    app.mount("/static/vendor", StaticFiles(directory=str(VENDOR_DIR), check_dir=False), name="static-vendor")
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
