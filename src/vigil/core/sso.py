"""Single sign-on rules: why a sign-in is refused, reading the groups claim, mapping IdP groups to user groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum


class SsoFailure(StrEnum):
    """Why a single sign-on attempt was refused; stored in the audit log and shown on the login page."""

    NOT_CONFIGURED = "not_configured"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_ERROR = "provider_error"  # the provider answered the authorization request with an error
    BAD_STATE = "bad_state"
    BAD_TOKEN = "bad_token"
    BAD_CLAIMS = "bad_claims"
    USER_NOT_ALLOWED = "user_not_allowed"
    RATE_LIMITED = "rate_limited"


class SsoError(Exception):
    """A refused single sign-on, with the reason and what the user (and the audit log) should see."""

    def __init__(self, failure: SsoFailure, message: str, subject: str | None = None) -> None:
        super().__init__(f"{failure}: {message}")
        self.failure = failure
        self.message = message
        self.subject = subject


def claim_values(claims: Mapping[str, object], path: str) -> list[str] | None:
    """The strings at ``path`` (dots descend into objects, as in Keycloak's ``realm_access.roles``).

    None when the claim is absent; a single string counts as a one-item list; anything else is a
    BAD_CLAIMS error naming the claim, because silently treating it as "no groups" would hide a
    misconfigured provider.
    """
    node: object = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, str):
        return [node]
    if isinstance(node, list) and all(isinstance(v, str) for v in node):
        return list(node)
    raise SsoError(SsoFailure.BAD_CLAIMS, f"the claim {path!r} must be a string or a list of strings, "
                                          f"not {type(node).__name__}")


def map_groups(idp_groups: Iterable[str], group_map: Mapping[str, Sequence[str]]) -> list[str]:
    """The Vigil user groups that the IdP's groups map to, in first-seen order, without repeats.

    Only mapped groups count: an IdP group that happens to share a name with a Vigil user group
    grants nothing, so that renaming a group at the IdP can never widen access by accident.
    """
    out: dict[str, None] = {}
    for g in idp_groups:
        for target in group_map.get(g, ()):
            out[target] = None
    return list(out)
