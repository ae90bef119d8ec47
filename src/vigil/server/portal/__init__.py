"""The web portal: server-rendered pages over the same services as the API, one module per area.

Each area (devices, alerts, incidents, actions, plan, settings, content, account, signin, sso) has its module here and
its templates in ``templates/<area>/``; ``templates/layout/`` holds the shared base page and the component macros,
``web`` the page guard, the form CSRF check and the refusal page, ``static/`` the portal's scripts and styles. A new
component adds its module and template folder, and its router to ``ROUTERS``.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from vigil.server.portal import (
    account,
    actions,
    alerts,
    content,
    devices,
    incidents,
    plan,
    settings,
    signin,
    sso,
)
from vigil.server.portal.web import STATIC_DIR

ROUTERS: tuple[APIRouter, ...] = (
    signin.router, devices.router, alerts.router, incidents.router, actions.router, plan.router, settings.router,
    content.router, sso.router, account.router,
)


def install(app: FastAPI) -> None:
    """The portal's pages, and its static files under /static."""
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
