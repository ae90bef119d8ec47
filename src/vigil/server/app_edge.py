"""The server's edge onto vigil.app: the caller as an app Principal, the store, and the HTTP error table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request

from vigil.app import errors as app_errors
from vigil.app.ports import HuntableStore
from vigil.app.principal import Principal
from vigil.app.stores import sql_store
from vigil.server import actions as action_service
from vigil.server.auth import client_ip, services
from vigil.server.errors import APIError
from vigil.server.scope import principal_of

# One table: each domain error's HTTP status and error code. The body is the server's one error shape.
HTTP_ERRORS: dict[type[app_errors.AppError], tuple[int, str]] = {
    app_errors.Forbidden: (403, "forbidden"),
    app_errors.NotFound: (404, "not_found"),
    app_errors.Ambiguous: (409, "ambiguous"),
    app_errors.GateClosed: (409, "signoff_required"),
    app_errors.Refused: (409, "plan_rejected"),
    app_errors.InvalidInput: (422, "invalid_request"),
    app_errors.NotConfigured: (503, "not_configured"),
}


def http_error(e: app_errors.AppError) -> APIError:
    status, code = next(v for k, v in HTTP_ERRORS.items() if isinstance(e, k))
    return APIError(status, code, e.message, field=e.field)


@contextmanager
def translated() -> Iterator[None]:
    """Turn a service's refusal into the API's error response."""
    try:
        yield
    except app_errors.AppError as e:
        raise http_error(e) from None


def principal(request: Request) -> Principal:
    """The guarded caller as the services see it; an API token is audited as its owner's token."""
    who = principal_of(request)
    actor = who.user.username + (f" (API token {who.api_token_id})" if who.api_token_id else "")
    return Principal(
        actor, who.permissions, who.device_group_ids, who.is_admin, client_ip(request), username=who.user.username,
        api_token_id=who.api_token_id,
    )


def store(request: Request) -> HuntableStore:
    """The store with the server's signing path, so response actions are signed as they are recorded."""
    svc = services(request)
    return sql_store(svc.engine, action_service.signing_issuer(svc.settings))
