"""Which address a request comes from: X-Forwarded-For believed only from trusted proxies, right-most first."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vigil.server.proxies import ProxyHeadersMiddleware, TrustedProxies


def _seen(proxies: list[str], peer: str, headers: list[tuple[bytes, bytes]], scheme: str = "http") -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(client=scope["client"][0], scheme=scope["scheme"])

    scope = {"type": "http", "client": (peer, 5000), "scheme": scheme, "headers": headers}
    asyncio.run(ProxyHeadersMiddleware(app, TrustedProxies(proxies))(scope, None, None))  # type: ignore[arg-type]
    return seen


def test_no_trusted_proxy_means_the_header_is_ignored_even_from_loopback() -> None:
    seen = _seen([], "127.0.0.1", [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")])
    assert seen == {"client": "127.0.0.1", "scheme": "http"}


def test_a_peer_outside_the_list_is_not_believed() -> None:
    seen = _seen(["10.0.0.0/8"], "192.0.2.1", [(b"x-forwarded-for", b"203.0.113.9")])
    assert seen["client"] == "192.0.2.1"


def test_a_trusted_proxy_is_believed() -> None:
    seen = _seen(["127.0.0.1"], "127.0.0.1", [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")])
    assert seen == {"client": "203.0.113.9", "scheme": "https"}


@pytest.mark.parametrize(
    ("xff", "client"),
    [
        # The client wrote the left-most hop itself; the proxy appended the address it really saw.
        ("1.1.1.1, 203.0.113.9", "203.0.113.9"),
        # Two proxies of ours: skip both, stop at the first address that is not ours.
        ("1.1.1.1, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        # Every hop is ours: the left-most is as far as the chain goes.
        ("10.0.0.3, 10.0.0.2", "10.0.0.3"),
        # Garbage stops the walk at the proxy that forwarded it.
        ("1.1.1.1, not-an-ip", "10.0.0.1"),
        ("", "10.0.0.1"),
        ("[2001:db8::7]:4711", "2001:db8::7"),
        ("198.51.100.4:8080", "198.51.100.4"),
    ],
)
def test_the_right_most_untrusted_hop_is_the_client(xff: str, client: str) -> None:
    assert TrustedProxies(["10.0.0.0/8"]).client("10.0.0.1", xff) == client


def test_several_headers_are_one_list_and_odd_proto_values_are_ignored() -> None:
    headers = [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"203.0.113.9"),
               (b"x-forwarded-proto", b"https, http")]
    assert _seen(["127.0.0.0/8"], "127.0.0.1", headers, scheme="https") == {"client": "203.0.113.9",
                                                                              "scheme": "https"}
    assert _seen(["127.0.0.0/8"], "127.0.0.1", [(b"x-forwarded-proto", b"gopher")])["scheme"] == "http"


def test_an_ipv4_mapped_peer_matches_its_ipv4_network() -> None:
    assert TrustedProxies(["192.0.2.0/24"]).trusts("::ffff:192.0.2.5")
    assert not TrustedProxies(["192.0.2.0/24"]).trusts("unix-socket")
