"""The bundle manifest: signature over its exact bytes, roll-back refusal, feed ages and staleness."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigil.tvm import bundle as b
from vigil.wire import public_key_text


def manifest(sequence: int = 1, digest: str = "ab" * 32) -> b.Manifest:
    feeds = (b.FeedAge("debian", "2025-02-13", 10), b.FeedAge("go", None, 5))
    return b.Manifest(b.FORMAT, sequence, "2025-03-01T00:00:00+00:00", digest, 15, feeds)


def test_signature_covers_the_manifest_bytes() -> None:
    key = Ed25519PrivateKey.generate()
    m = manifest()
    sig = b.sign(key, m)
    assert b.verify(public_key_text(key), m.to_bytes(), sig) == m
    with pytest.raises(b.BundleError, match="signature invalid"):
        b.verify(public_key_text(key), manifest(2).to_bytes(), sig)
    with pytest.raises(b.BundleError, match="signature invalid"):
        b.verify(public_key_text(Ed25519PrivateKey.generate()), m.to_bytes(), sig)
    with pytest.raises(b.BundleError, match="not a raw Ed25519 public key"):
        b.verify("not base64!", m.to_bytes(), sig)
    with pytest.raises(b.BundleError, match="not a Vigil feed bundle"):
        b.Manifest.from_bytes(b'{"format": "other"}')


def test_only_newer_bundles_are_taken() -> None:
    assert b.check_newer(manifest(2), None) is True
    assert b.check_newer(manifest(2), manifest(1)) is True
    assert b.check_newer(manifest(2), manifest(2)) is False  # the same bundle again
    with pytest.raises(b.BundleError, match="not newer"):
        b.check_newer(manifest(2, "cd" * 32), manifest(2))
    with pytest.raises(b.BundleError, match="version 1 is not newer than the imported version 2"):
        b.check_newer(manifest(1), manifest(2))


def test_stale_feeds_use_the_newest_entry_or_the_bundle_date() -> None:
    now = datetime(2025, 3, 5, tzinfo=UTC)
    assert b.stale_feeds(manifest(), now, max_age_days=7) == [("debian", 20)]
    assert b.stale_feeds(manifest(), datetime(2025, 3, 20, tzinfo=UTC), 7) == [("debian", 35), ("go", 19)]
    assert b.stale_feeds(manifest(), now, max_age_days=30) == []
