"""The client's address and scheme: X-Forwarded-For/-Proto believed only from the configured reverse proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d; compare it as the IPv4 address it is.
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TrustedProxies:
    """The `trusted_proxies` setting as networks, and the client address a request's hops resolve to."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(e, strict=False) for e in entries)

    def trusts(self, host: str | None) -> bool:
        addr = _address(host) if host else None
        return addr is not None and any(addr in net for net in self.networks)

    def client(self, peer: str, forwarded_for: str) -> str:
        """The right-most address in X-Forwarded-For that is not one of our proxies.

        Each proxy appends the address it received the request from, so the hops left of the first
        untrusted one were written by whoever sent the request and prove nothing. A hop that is not an
        address at all stops the walk at the proxy that forwarded it.
        """
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            addr = _address(hop)
            if addr is None:
                break
            client = str(addr)
            if not self.trusts(client):
                break
        return client


class ProxyHeadersMiddleware:
    """Rewrites the ASGI scope's client and scheme when, and only when, the direct peer is a trusted proxy.

    Everything downstream (rate limits, audit records, session records, Secure cookies, HSTS) reads
    ``request.client`` and ``request.url.scheme``, so this one rewrite is the only place proxies are trusted.
    """

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app, self.proxies = app, proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.proxies.networks:
            peer = scope.get("client")
            if peer and self.proxies.trusts(peer[0]):
                scope = dict(scope)
                forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
                if forwarded:
                    scope["client"] = (self.proxies.client(peer[0], ",".join(forwarded)), 0)
                proto = [v.decode("latin-1").strip().lower() for k, v in scope["headers"] if k == b"x-forwarded-proto"]
                # One value, set (not appended) by the proxy; anything else is ignored rather than guessed at.
                if len(proto) == 1 and proto[0] in ("http", "https"):
                    scheme = proto[0]
                    scope["scheme"] = scheme.replace("http", "ws") if scope["type"] == "websocket" else scheme
        await self.app(scope, receive, send)
