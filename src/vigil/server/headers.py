"""Security headers on every response: a strict CSP (no inline script or style), HSTS over TLS, no framing."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
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
# Swagger UI comes from FastAPI's CDN default; its page may load that origin's script and style and run its
# own inline start-up script (allowed by hash, not by 'unsafe-inline'), and nothing else.
SWAGGER_CDN = "https://cdn.jsdelivr.net"
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


def install_api_docs(app: FastAPI, path: str) -> None:
    """Swagger UI at ``path`` (FastAPI's own page, minus its third-party favicon and validator badge)."""

    async def swagger_ui(request: Request) -> Response:
        page = get_swagger_ui_html(
            openapi_url=request.scope.get("root_path", "").rstrip("/") + (app.openapi_url or ""),
            title=f"{app.title} - Swagger UI", swagger_favicon_url="data:,",
            swagger_ui_parameters={"validatorUrl": None},
        )
        html = bytes(page.body).decode()
        page.headers["content-security-policy"] = (
            f"default-src 'self'; script-src {SWAGGER_CDN} {_script_hashes(html)}; style-src {SWAGGER_CDN}; "
            "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
        )
        return page

    app.add_route(path, swagger_ui, include_in_schema=False)


def install(app: FastAPI) -> None:
    app.add_middleware(SecurityHeadersMiddleware)
