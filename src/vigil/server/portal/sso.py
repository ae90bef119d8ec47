"""Portal single sign-on: send the browser to the identity provider, take it back, and open a session."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from vigil.config import OidcSettings
from vigil.core.sso import SsoError, SsoFailure, claim_values, map_groups
from vigil.server.auth import client_ip, public, services
from vigil.server.oidc import Flow, Identity, OidcClient
from vigil.server.portal.signin import start_session
from vigil.server.services import Services
from vigil.store import audit
from vigil.store.audit import Change
from vigil.store.rbac import sync_sso_memberships
from vigil.store.users import User, upsert_sso_user

router = APIRouter(include_in_schema=False)

FLOW_COOKIE = "vigil_oidc"
FLOW_PATH = "/login/oidc"
FLOW_LIFETIME_SECONDS = 600
CALLBACK_PATH = "/login/oidc/callback"
# Room for the "@sso" suffix that keeps an SSO user from taking a local account's name.
_MAX_USERNAME = 124

# The callback answers with this page instead of a redirect: the browser arrives from the provider's
# site, and a redirect would keep that cross-site origin, so the SameSite=Strict session cookie set
# here would not be sent with the next page. A same-site refresh carries it.
_BOUNCE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="0;url=/"><title>Signed in</title></head>
<body><p>Signed in. <a href="/">Continue to Vigil</a></p></body></html>"""


def _serializer(svc: Services) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(svc.secret_key, salt="vigil-oidc-flow")


def _oidc(svc: Services) -> OidcSettings:
    if svc.settings.oidc is None:
        raise SsoError(SsoFailure.NOT_CONFIGURED, "single sign-on is not configured on this server")
    return svc.settings.oidc


def _client(svc: Services) -> OidcClient:
    return OidcClient(_oidc(svc), svc.settings.url + CALLBACK_PATH)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get(FLOW_PATH)
def oidc_start(request: Request, _: None = public()) -> Response:
    svc = services(request)
    try:
        url, flow = _client(svc).begin()
    except SsoError as e:
        return _refused(svc, request, e)
    resp = RedirectResponse(url, status_code=303)
    # Lax, not Strict: the provider sends the browser back with a cross-site navigation, and the
    # callback must see this cookie. It holds no session, only this one sign-in's state, nonce and verifier.
    resp.set_cookie(FLOW_COOKIE, _serializer(svc).dumps(asdict(flow)), max_age=FLOW_LIFETIME_SECONDS,
                    path=FLOW_PATH, httponly=True, secure=_secure(request), samesite="lax")
    return resp


@router.get(CALLBACK_PATH)
def oidc_callback(request: Request, _: None = public()) -> Response:
    svc = services(request)
    try:
        if not svc.login_limiter.allow(client_ip(request) or "?"):
            raise SsoError(SsoFailure.RATE_LIMITED, "too many sign-in attempts; wait a minute")
        flow = _flow(svc, request.cookies.get(FLOW_COOKIE))
        identity = _client(svc).finish(flow, dict(request.query_params), svc.clock.now())
        user = _admit(svc, identity, client_ip(request))
    except SsoError as e:
        resp = _refused(svc, request, e)
    else:
        resp = start_session(request, HTMLResponse(_BOUNCE), user)
    # One flow, one callback: a replayed or second callback finds no flow and is refused.
    resp.delete_cookie(FLOW_COOKIE, path=FLOW_PATH, secure=_secure(request), httponly=True, samesite="lax")
    return resp


def _flow(svc: Services, cookie: str | None) -> Flow:
    if not cookie:
        raise SsoError(SsoFailure.BAD_STATE, "this browser did not start a sign-in (or its cookie was blocked)")
    try:
        data: Any = _serializer(svc).loads(cookie, max_age=FLOW_LIFETIME_SECONDS)
    except SignatureExpired as e:
        raise SsoError(SsoFailure.BAD_STATE, "the sign-in took longer than 10 minutes; start again") from e
    except BadSignature as e:
        raise SsoError(SsoFailure.BAD_STATE, "the sign-in cookie was altered") from e
    try:
        return Flow(**data)
    except TypeError as e:
        raise SsoError(SsoFailure.BAD_STATE, "the sign-in cookie is not one this server writes") from e


def _username(oidc: OidcSettings, identity: Identity) -> str:
    names = claim_values(identity.claims, oidc.username_claim) or claim_values(identity.claims, "email")
    name = names[0] if names else identity.subject
    if not name or len(name) > _MAX_USERNAME:
        raise SsoError(SsoFailure.BAD_CLAIMS, f"the claim {oidc.username_claim!r} must be 1–{_MAX_USERNAME} characters",
                       identity.subject)
    return name


def _admit(svc: Services, identity: Identity, ip: str | None) -> User:
    """Create or update the user, make its SSO memberships those the IdP's groups map to, audit the sign-in."""
    oidc = _oidc(svc)
    username = _username(oidc, identity)
    emails = claim_values(identity.claims, "email")
    email = emails[0][:255] if emails else None
    idp_groups = claim_values(identity.claims, oidc.groups_claim) or []
    groups = map_groups(idp_groups, oidc.group_map)
    if oidc.require_mapped_group and not groups:
        raise SsoError(SsoFailure.USER_NOT_ALLOWED,
                       f"{username} is in no identity-provider group that gives access to Vigil", username)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        # The subject is unique only within its issuer (OIDC Core §2), so the issuer is part of the key.
        user = upsert_sso_user(conn, f"{identity.issuer}#{identity.subject}", username, email, now,
                               create=oidc.create_users)
        if user is not None:
            joined = sync_sso_memberships(conn, user.id, groups)
            audit.append(conn, Change(user.username, "user.sign_in", "user", user.username, source_ip=ip,
                                      after={"method": "oidc", "issuer": identity.issuer, "idpGroups": idp_groups,
                                             "userGroups": joined}), now)
    if user is None:
        why = "is disabled" if oidc.create_users else "is disabled or has no Vigil account (new users are not created)"
        raise SsoError(SsoFailure.USER_NOT_ALLOWED, f"{username} {why}", username)
    return user


def _refused(svc: Services, request: Request, e: SsoError) -> Response:
    """Audit the refusal and show its reason on the sign-in page."""
    oidc = svc.settings.oidc
    with svc.engine.begin() as conn:
        audit.append(conn, Change(
            e.subject or "(single sign-on)", "user.sign_in_failed", "user", e.subject or "",
            source_ip=client_ip(request),
            after={"method": "oidc", "issuer": oidc.issuer if oidc else None, "reason": e.failure.value,
                   "detail": e.message},
        ), svc.clock.now())
    message = f"Sign-in with {oidc.provider_name if oidc else 'single sign-on'} failed: {e.message}"
    return RedirectResponse(f"/login?error={quote(message)}", status_code=303)
