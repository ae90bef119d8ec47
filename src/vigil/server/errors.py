"""One error shape for every 4xx/5xx the server returns: what went wrong and which field."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("vigil.server")


class APIError(Exception):
    def __init__(
        self, status: int, error: str, detail: str, field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.field = status, error, detail, field
        self.headers = headers


def _body(error: str, detail: str, field: str | None) -> dict[str, str | None]:
    return {"error": error, "detail": detail, "field": field}


class HtmlErrors:
    """How the portal renders an error for a person (``portal.web``): whether the request wants a page, and the page.

    Given to ``install`` by the composition root, so this module needs no portal import."""

    def __init__(self, wants: Callable[[Request], bool], render: Callable[..., Response]) -> None:
        self.wants, self.render = wants, render


def install(app: FastAPI, html: HtmlErrors | None = None) -> None:
    def answer(request: Request, status: int, error: str, detail: str, field: str | None,
               headers: dict[str, str] | None = None, **extra: object) -> Response:
        if html is not None and html.wants(request):
            try:
                return html.render(request, status, error, detail, field, headers, **extra)
            except Exception:  # the page failed to render: the JSON answer still says what went wrong
                log.exception("error page for %s failed", request.url.path)
        return JSONResponse(_body(error, detail, field), status_code=status, headers=headers)

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError) -> Response:
        extra = {"permission": e.permission} if hasattr(e, "permission") else {}
        return answer(request, e.status, e.error, e.detail, e.field, e.headers, **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> Response:
        first = e.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or None
        return answer(request, 422, "invalid_request", f"{where or 'request'}: {first['msg']}", where)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        return answer(request, e.status_code, "http_error", str(e.detail), None,
                      dict(e.headers) if e.headers else None)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return answer(request, 500, "internal_error", "the server failed; see its log", None)
