"""The signed feed bundle's manifest: what it holds, its version, the store's digest, and the Ed25519 signature
over the manifest's exact bytes; feed age and staleness. Packing the files is the adapter's job.

A bundle is a zip of three members: `manifest.json`, `manifest.sig` (base64 Ed25519 signature of
manifest.json's bytes, made with the same PEM PKCS8 key files as the server's action-signing key) and
`feeds.sqlite` (the feed store), whose SHA-256 the manifest carries. A bundle is accepted only when the signature
is by the trusted key, the store's digest matches, and its `sequence` is newer than the one imported before.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = "vigil-tvm-feed-bundle/1"
STALE_AFTER_DAYS = 7


class BundleError(ValueError):
    """A bundle that must not be used: unsigned, tampered, by another key, older, or malformed."""


@dataclass(frozen=True, slots=True)
class FeedAge:
    name: str
    newest: str | None  # ISO date of the feed's newest entry
    advisories: int


@dataclass(frozen=True, slots=True)
class Manifest:
    format: str
    sequence: int  # the bundle's version: strictly increasing, an import refuses anything not newer
    created_at: str  # ISO UTC
    store_sha256: str
    advisories: int
    feeds: tuple[FeedAge, ...]

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            doc: Any = json.loads(data)
            if doc.get("format") != FORMAT:
                raise BundleError(f"not a Vigil feed bundle of format {FORMAT!r}: format {doc.get('format')!r}")
            return cls(
                doc["format"],
                int(doc["sequence"]),
                str(doc["created_at"]),
                str(doc["store_sha256"]),
                int(doc["advisories"]),
                tuple(FeedAge(str(f["name"]), f.get("newest"), int(f["advisories"])) for f in doc["feeds"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            if isinstance(e, BundleError):
                raise
            raise BundleError(f"malformed bundle manifest: {e}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign(key: Ed25519PrivateKey, manifest: Manifest) -> bytes:
    return base64.b64encode(key.sign(manifest.to_bytes()))


def verify(public_key_b64: str, manifest_bytes: bytes, signature_b64: bytes) -> Manifest:
    """The manifest, if `signature_b64` is the trusted key's signature over exactly these bytes."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64.strip(), validate=True))
    except ValueError as e:
        raise BundleError(f"the trusted feed key is not a raw Ed25519 public key in base64: {e}") from None
    try:
        key.verify(base64.b64decode(signature_b64.strip(), validate=True), manifest_bytes)
    except (InvalidSignature, ValueError):
        raise BundleError(
            "bundle signature invalid: the manifest was altered or signed by another key than the trusted one"
        ) from None
    return Manifest.from_bytes(manifest_bytes)


def check_store(manifest: Manifest, store: bytes) -> None:
    digest = sha256(store)
    if digest != manifest.store_sha256:
        raise BundleError(
            f"bundle tampered: feeds.sqlite has SHA-256 {digest[:16]}…, the signed manifest says "
            f"{manifest.store_sha256[:16]}…"
        )


def check_newer(manifest: Manifest, current: Manifest | None) -> bool:
    """True when the bundle is newer than the imported one; False when it is that same bundle; raises if older."""
    if current is None or manifest.sequence > current.sequence:
        return True
    if manifest.sequence == current.sequence and manifest.store_sha256 == current.store_sha256:
        return False
    raise BundleError(
        f"bundle version {manifest.sequence} is not newer than the imported version {current.sequence} "
        f"(built {current.created_at}); refusing to roll the feeds back"
    )


def age_days(newest: str | None, today: date) -> int | None:
    if not newest:
        return None
    try:
        return (today - date.fromisoformat(newest[:10])).days
    except ValueError:
        return None


def stale_feeds(manifest: Manifest, now: datetime, max_age_days: int = STALE_AFTER_DAYS) -> list[tuple[str, int]]:
    """(feed, age in days) of each feed whose newest entry (or, for a feed without dates, the bundle) is older
    than `max_age_days`."""
    today = now.astimezone(UTC).date()
    out = []
    for f in manifest.feeds:
        age = age_days(f.newest or manifest.created_at, today)
        if age is not None and age > max_age_days:
            out.append((f.name, age))
    return out
