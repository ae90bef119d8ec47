"""The OpenID Connect relying party: discovery, the code flow with PKCE, and ID-token validation (Authlib)."""

from __future__ import annotations

import ssl
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client import OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from vigil.config import OidcSettings, SettingsError
from vigil.core.sso import SsoError, SsoFailure

with warnings.catch_warnings():
    # Authlib 1.9 nudges httpx users towards httpx2. Vigil uses httpx throughout (and pins Authlib), so
    # this one notice is expected; any other warning from the import still shows.
    warnings.filterwarnings("ignore", "The httpx module is deprecated", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client


@dataclass(frozen=True)
class Flow:
    """What the browser carries (signed) between the redirect to the provider and the callback."""

    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class Identity:
    """A verified sign-in: the ID token's claims, completed from the UserInfo endpoint when it lacks some."""

    issuer: str
    subject: str
    claims: dict[str, Any]


@dataclass(frozen=True)
class _Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    algorithms: list[str] | None


class OidcClient:
    """One identity provider; fetches discovery and keys at each sign-in so key rotation needs no restart."""

    def __init__(self, settings: OidcSettings, redirect_uri: str) -> None:
        self.settings = settings
        self.redirect_uri = redirect_uri

    def _verify(self) -> ssl.SSLContext | bool:
        if not self.settings.ca_file:
            return True
        try:
            return ssl.create_default_context(cafile=self.settings.ca_file)
        except OSError as e:
            raise SsoError(SsoFailure.NOT_CONFIGURED, f"oidc.ca_file {self.settings.ca_file}: {e.strerror}") from e

    def _client(self) -> OAuth2Client:
        try:
            secret = self.settings.secret()
        except SettingsError as e:
            raise SsoError(SsoFailure.NOT_CONFIGURED, str(e)) from e
        return OAuth2Client(
            client_id=self.settings.client_id, client_secret=secret or None,
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            scope=" ".join(self.settings.scopes), redirect_uri=self.redirect_uri,
            code_challenge_method="S256", timeout=self.settings.timeout_seconds, verify=self._verify(),
        )

    def _get_json(self, client: OAuth2Client, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            r = client.request("GET", url, withhold_token=True, **kwargs)
        except httpx.HTTPError as e:
            raise SsoError(SsoFailure.PROVIDER_UNAVAILABLE,
                           f"the identity provider did not answer ({what} at {url}: {e or type(e).__name__})") from e
        if r.status_code != 200:
            raise SsoError(SsoFailure.PROVIDER_UNAVAILABLE,
                           f"the identity provider's {what} at {url} answered HTTP {r.status_code}")
        try:
            body = r.json()
        except ValueError as e:
            raise SsoError(SsoFailure.PROVIDER_UNAVAILABLE, f"the identity provider's {what} is not JSON") from e
        if not isinstance(body, dict):
            raise SsoError(SsoFailure.PROVIDER_UNAVAILABLE, f"the identity provider's {what} is not a JSON object")
        return body

    def _metadata(self, client: OAuth2Client) -> _Metadata:
        url = f"{self.settings.issuer}/.well-known/openid-configuration"
        doc = self._get_json(client, url, "discovery document")
        # OIDC Discovery §4.3: the document must name exactly the issuer we were configured with,
        # otherwise a provider could vouch for users in another issuer's name.
        if doc.get("issuer") != self.settings.issuer:
            raise SsoError(SsoFailure.PROVIDER_ERROR,
                           f"the discovery document names issuer {doc.get('issuer')!r}, not {self.settings.issuer!r}")
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not doc.get(k)]
        if missing:
            raise SsoError(SsoFailure.PROVIDER_ERROR, f"the discovery document lacks {', '.join(missing)}")
        algs = doc.get("id_token_signing_alg_values_supported")
        return _Metadata(
            doc["issuer"], doc["authorization_endpoint"], doc["token_endpoint"], doc["jwks_uri"],
            doc.get("userinfo_endpoint"), [a for a in algs if a != "none"] if isinstance(algs, list) else None,
        )

    def begin(self) -> tuple[str, Flow]:
        """The provider's authorization URL to send the browser to, and the flow to keep until the callback."""
        flow = Flow(generate_token(32), generate_token(32), generate_token(64))
        with self._client() as client:
            meta = self._metadata(client)
            url, _ = client.create_authorization_url(
                meta.authorization_endpoint, state=flow.state, code_verifier=flow.code_verifier, nonce=flow.nonce,
            )
        return str(url), flow

    def finish(self, flow: Flow, params: dict[str, str], now: datetime) -> Identity:
        """Check the callback against the flow, redeem the code, and validate the ID token."""
        if "error" in params:
            detail = params.get("error_description") or params["error"]
            raise SsoError(SsoFailure.PROVIDER_ERROR, f"the identity provider refused the sign-in: {detail}")
        if params.get("state") != flow.state:
            raise SsoError(SsoFailure.BAD_STATE, "the sign-in response does not belong to this browser's sign-in")
        # RFC 9207: a provider that names itself in the response must be the one we sent the browser to
        # (guards against mix-up with another provider).
        if "iss" in params and params["iss"] != self.settings.issuer:
            raise SsoError(SsoFailure.BAD_STATE, f"the sign-in response comes from {params['iss']!r}, "
                                                 f"not {self.settings.issuer!r}")
        if not params.get("code"):
            raise SsoError(SsoFailure.PROVIDER_ERROR, "the identity provider sent no authorization code")
        with self._client() as client:
            meta = self._metadata(client)
            token = self._redeem(client, meta, params["code"], flow)
            claims = self._validate_id_token(client, meta, token, flow, now)
            if meta.userinfo_endpoint and not self._has_profile(claims):
                claims = self._with_userinfo(client, meta, token, claims)
        return Identity(meta.issuer, str(claims["sub"]), claims)

    def _redeem(self, client: OAuth2Client, meta: _Metadata, code: str, flow: Flow) -> dict[str, Any]:
        try:
            token = client.fetch_token(
                meta.token_endpoint, grant_type="authorization_code", code=code, code_verifier=flow.code_verifier,
            )
        except httpx.HTTPError as e:
            raise SsoError(SsoFailure.PROVIDER_UNAVAILABLE,
                           f"the identity provider's token endpoint did not answer: {e or type(e).__name__}") from e
        except ValueError as e:  # a body that is not JSON: a proxy's error page, a crashed provider
            raise SsoError(SsoFailure.PROVIDER_UNAVAILABLE,
                           f"the identity provider's token endpoint sent an unreadable answer: {e}") from e
        except OAuthError as e:
            raise SsoError(SsoFailure.BAD_TOKEN,
                           f"the identity provider refused the authorization code: {e.error} {e.description or ''}"
                           .strip()) from e
        if not isinstance(token, dict) or not token.get("id_token"):
            raise SsoError(SsoFailure.BAD_TOKEN, "the token response holds no ID token")
        return dict(token)

    def _keys(self, client: OAuth2Client, meta: _Metadata) -> KeySet:
        try:
            return KeySet.import_key_set(self._get_json(client, meta.jwks_uri, "key set (JWKS)"))  # type: ignore[arg-type]
        except JoseError as e:
            raise SsoError(SsoFailure.PROVIDER_ERROR, f"the identity provider's key set is unusable: {e}") from e

    def _validate_id_token(
        self, client: OAuth2Client, meta: _Metadata, token: dict[str, Any], flow: Flow, now: datetime,
    ) -> dict[str, Any]:
        registry = JWSRegistry(algorithms=meta.algorithms, strict_check_header=False)
        try:
            try:
                decoded = jwt.decode(token["id_token"], self._keys(client, meta), registry=registry)
            except InvalidKeyIdError:
                # Our key set may predate a rotation; fetch it again once.
                decoded = jwt.decode(token["id_token"], self._keys(client, meta), registry=registry)
            claims = CodeIDToken(
                decoded.claims, decoded.header,
                {"iss": {"essential": True, "value": meta.issuer}, "aud": {"essential": True,
                                                                           "value": self.settings.client_id},
                 "sub": {"essential": True}, "nonce": {"essential": True}},
                {"nonce": flow.nonce, "client_id": self.settings.client_id, "access_token": token.get("access_token")},
            )
            claims.validate(now=int(now.timestamp()), leeway=self.settings.clock_skew_seconds)
        except JoseError as e:
            raise SsoError(SsoFailure.BAD_TOKEN, f"the ID token is not valid: {_describe(e)}") from e
        return dict(claims)

    def _has_profile(self, claims: dict[str, Any]) -> bool:
        first = self.settings.groups_claim.split(".")[0]
        return first in claims and self.settings.username_claim in claims

    def _with_userinfo(
        self, client: OAuth2Client, meta: _Metadata, token: dict[str, Any], claims: dict[str, Any],
    ) -> dict[str, Any]:
        assert meta.userinfo_endpoint
        info = self._get_json(client, meta.userinfo_endpoint, "UserInfo endpoint",
                              headers={"Authorization": f"Bearer {token.get('access_token', '')}"})
        # OIDC Core §5.3.2: UserInfo must be about the same subject, or it must not be used.
        if info.get("sub") != claims["sub"]:
            raise SsoError(SsoFailure.BAD_CLAIMS, "the UserInfo response is about another subject than the ID token")
        return {**info, **claims}


def _describe(e: JoseError) -> str:
    """A readable reason: joserfc's messages name the claim ('nonce', 'aud', 'exp') or the signature problem."""
    text = getattr(e, "description", None) or str(e) or type(e).__name__
    return f"{e.error}: {text}" if getattr(e, "error", None) and e.error not in text else str(text)
