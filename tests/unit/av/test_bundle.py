"""Definition bundles: built, signed, verified before use; a tampered, foreign or older bundle is refused."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigil.av import bundle
from vigil.av.bundle import BundleError, InstalledDefinitions
from vigil.av.engine import Engine

KEY = Ed25519PrivateKey.generate()
TRUSTED = [KEY.public_key()]


def _inputs(tmp_path: Path) -> tuple[Path, Path, bytes]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yar").write_text('rule Test_Marker { strings: $a = "bundle-marker-7" condition: $a }')
    sample = b"a sample the hash list names " + tmp_path.name.encode()
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"{hashlib.sha256(sample).hexdigest()} Trojan:Linux/Listed.A\n")
    return rules, hashes, sample


def test_a_built_bundle_loads_and_its_signatures_match(tmp_path: Path) -> None:
    rules, hashes, sample = _inputs(tmp_path)
    data, report = bundle.build(KEY, yara_paths=[rules], hash_lists=[hashes], version=5,
                                now=datetime(2026, 12, 1, tzinfo=UTC))
    assert (report.version, report.yara.rules, report.hashes) == (5, 1, {"sha256": 1})
    definitions = bundle.read_bundle(data, TRUSTED)
    assert definitions.version == 5 and definitions.created == datetime(2026, 12, 1, tzinfo=UTC)
    engine = Engine(definitions)
    (tmp_path / "listed").write_bytes(sample)
    (tmp_path / "marked").write_bytes(b"xx bundle-marker-7 xx")
    listed, marked = (engine.scan_file(str(tmp_path / n))[0].detections for n in ("listed", "marked"))
    assert [d.threat.name for d in listed] == ["Trojan:Linux/Listed.A"]
    assert [d.threat.signature for d in marked] == ["f0.Test_Marker"]


def test_a_tampered_bundle_is_refused(tmp_path: Path) -> None:
    rules, hashes, _ = _inputs(tmp_path)
    data, _ = bundle.build(KEY, yara_paths=[rules], hash_lists=[hashes], version=5)
    payload_flip = bytearray(data)
    payload_flip[-10] ^= 1
    with pytest.raises(BundleError, match="does not match its signed digest"):
        bundle.read_bundle(bytes(payload_flip), TRUSTED)
    header_flip = data.replace(b'"version": 5', b'"version": 9')
    with pytest.raises(BundleError, match="signature does not verify"):
        bundle.read_bundle(header_flip, TRUSTED)
    with pytest.raises(BundleError, match="signature does not verify"):
        bundle.read_bundle(data, [Ed25519PrivateKey.generate().public_key()])
    with pytest.raises(BundleError, match="not a Vigil definition bundle"):
        bundle.read_bundle(b"PK\x03\x04 something else", TRUSTED)


def test_install_keeps_the_previous_and_refuses_a_downgrade(tmp_path: Path) -> None:
    rules, hashes, _ = _inputs(tmp_path)
    installed = InstalledDefinitions(tmp_path / "definitions")
    v5, _ = bundle.build(KEY, hash_lists=[hashes], version=5)
    v6, _ = bundle.build(KEY, yara_paths=[rules], hash_lists=[hashes], version=6)
    v4, _ = bundle.build(KEY, version=4)
    installed.install(v5, TRUSTED, "v5.vab")
    installed.install(v6, TRUSTED, "v6.vab")
    assert installed.previous.read_bytes() == v5
    with pytest.raises(BundleError, match="version 4 is older than the installed 6: a downgrade is refused"):
        installed.install(v4, TRUSTED, "v4.vab")
    with pytest.raises(BundleError, match="already installed"):
        installed.install(v6, TRUSTED, "v6.vab")
    loaded = installed.load(TRUSTED)
    assert loaded is not None and loaded.version == 6 and (installed.folder.stat().st_mode & 0o777) == 0o700


def test_a_bundle_for_newer_heuristics_is_refused(tmp_path: Path) -> None:
    data, _ = bundle.build(KEY, version=3, heuristics_version=99)
    with pytest.raises(BundleError, match="built for heuristics version 99"):
        bundle.read_bundle(data, TRUSTED)


def test_public_keys_are_read_from_base64_or_pem() -> None:
    from cryptography.hazmat.primitives import serialization

    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = bundle._public_text(KEY.public_key())
    for text in (pem.decode(), raw):
        assert bundle.public_key_from_text(text).public_bytes_raw() == KEY.public_key().public_bytes_raw()
    with pytest.raises(BundleError, match="not an Ed25519 public key"):
        bundle.public_key_from_text("not-a-key")
