"""Security headers on every response: a strict CSP (no inline script or style), HSTS over TLS, no framing."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The portal's scripts and styles are files under /static; nothing inline is allowed to run or apply, so
# markup injected into a page (a device name, a command line) can neither script nor restyle it.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'; object-src 'none'")
HSTS = "max-age=31536000"  # one year; not includeSubDomains: the operator's other hosts are not ours to pin
HEADERS = {
    b"content-security-policy": CSP.encode(),
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
}
# Swagger UI and ReDoc come from Vigil's own server (the fastapi-offline package ships their files), so the docs
# work air-gapped; their pages may run their own inline start-up script (allowed by hash, not by 'unsafe-inline').
API_DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


class SecurityHeadersMiddleware:
    """Adds the headers to each HTTP response that does not set its own (the API docs page sets its CSP)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The scheme seen here is the one the trusted proxy reported, if any (the proxy middleware runs first).
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = dict(HEADERS)
                if tls:
                    extra[b"strict-transport-security"] = HSTS.encode()
                headers += [(k, v) for k, v in extra.items() if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _script_hashes(html: str) -> str:
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )


def _docs_csp(html: str, style: str = "'self'", extra: str = "") -> str:
    return (f"default-src 'self'; script-src 'self' {_script_hashes(html)}; style-src {style}; img-src 'self' data:; "
            f"frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'{extra}")


def install_api_docs(app: FastAPI, path: str, redoc_path: str = "/api/redoc") -> None:
    """Swagger UI at ``path`` and ReDoc at ``redoc_path``, their scripts and styles served from ``path``/assets."""
    assets = path.rstrip("/") + "/assets"
    app.mount(assets, StaticFiles(directory=str(API_DOCS_ASSETS)), name="api-docs-assets")

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui(request: Request) -> Response:
        page = get_swagger_ui_html(
            openapi_url=root(request) + (app.openapi_url or ""),
            title=f"{app.title} - Swagger UI", swagger_favicon_url="data:,",
            swagger_js_url=root(request) + assets + "/swagger-ui-bundle.js",
            swagger_css_url=root(request) + assets + "/swagger-ui.css",
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["content-security-policy"] = _docs_csp(bytes(page.body).decode())
        return page

    async def redoc(request: Request) -> Response:
        page = get_redoc_html(
            openapi_url=root(request) + (app.openapi_url or ""), title=f"{app.title} - ReDoc",
            redoc_js_url=root(request) + assets + "/redoc.standalone.js", redoc_favicon_url="data:,",
            with_google_fonts=False,
        )
        # ReDoc styles itself with injected <style> elements and renders in a blob: worker: this page only.
        page.headers["content-security-policy"] = _docs_csp(
            bytes(page.body).decode(), "'self' 'unsafe-inline'", "; worker-src 'self' blob:")
        return page

    app.add_route(path, swagger_ui, include_in_schema=False)
    app.add_route(redoc_path, redoc, include_in_schema=False)


def install(app: FastAPI) -> None:
    app.add_middleware(SecurityHeadersMiddleware)
