"""`vigil av` as a user runs it (a real process, no server, no enrolment): scan, bundles, definitions, quarantine."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.unit.av.av_support import eicar, tar_gz_of, zip_of


def _vigil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("VIGIL_AV_PUBLIC_KEY", "VIGIL_DATA_DIR")}
    return subprocess.run([sys.executable, "-m", "vigil", "av", *args], capture_output=True, text=True, timeout=120,
                          env={**base, **(env or {})}, check=False)


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / "signing.pem", tmp_path / "signing.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def test_scan_custom_standalone_finds_eicar_in_files_and_archives(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "eicar.com").write_bytes(eicar())
    (target / "a.zip").write_bytes(zip_of({"inner/e.txt": eicar()}))
    (target / "b.tar.gz").write_bytes(tar_gz_of({"x/e.txt": eicar()}))
    (target / "clean.txt").write_text("nothing to see")
    r = _vigil("scan", "custom", str(target), "--output", "json", "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert report["files"] == 4 and report["threats"] == 3
    assert sorted(d["location"] for d in report["detections"]) == [
        f"{target}/a.zip->inner/e.txt", f"{target}/b.tar.gz->x/e.txt", f"{target}/eicar.com"]
    assert {d["name"] for d in report["detections"]} == {"Virus:DOS/EICAR_Test_File"}
    clean = _vigil("scan", "custom", str(target / "clean.txt"), "--state-dir", str(tmp_path / "state"))
    assert clean.returncode == 0 and "0 threat(s)" in clean.stdout
    missing = _vigil("scan", "custom", str(tmp_path / "nope"), "--state-dir", str(tmp_path / "state"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr


def test_bundle_build_scan_with_it_import_and_refusals(tmp_path: Path) -> None:
    private, public = _keys(tmp_path)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yar").write_text('rule Linux_Trojan_Marker { meta: tc_detection_type = "Trojan" '
                                 'tc_detection_name = "Marker" strings: $a = "cli-marker-31337" condition: $a }')
    sample = tmp_path / "target" / "listed.bin"
    sample.parent.mkdir()
    sample.write_bytes(os.urandom(1000))
    (sample.parent / "marked").write_bytes(b"... cli-marker-31337 ...")
    hashes = tmp_path / "hashes.hsb"
    hashes.write_text(f"{hashlib.sha256(sample.read_bytes()).hexdigest()}:1000:Listed.A\n")
    state = str(tmp_path / "state")
    for version in ("10", "9"):
        r = _vigil("bundle", "build", "--yara", str(rules), "--hashes", str(hashes), "--version", version,
                   "--key", str(private), "--out", str(tmp_path / f"v{version}.vab"), "--output", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["yara_rules"] == 1
    scan = _vigil("scan", "custom", str(sample.parent), "--bundle", str(tmp_path / "v10.vab"), "--public-key",
                  str(public), "--output", "json", "--state-dir", state)
    assert scan.returncode == 1, scan.stderr
    assert sorted(d["name"] for d in json.loads(scan.stdout)["detections"]) == [
        "Trojan:Linux/Listed.A", "Trojan:Linux/Marker"]
    tampered = bytearray((tmp_path / "v10.vab").read_bytes())
    tampered[-1] ^= 1
    (tmp_path / "bad.vab").write_bytes(bytes(tampered))
    bad = _vigil("scan", "custom", str(sample.parent), "--bundle", str(tmp_path / "bad.vab"), "--public-key",
                 str(public), "--state-dir", state)
    assert bad.returncode == 2 and "the bundle was altered; refused" in bad.stderr
    untrusted = _vigil("scan", "custom", str(sample), "--bundle", str(tmp_path / "v10.vab"), "--state-dir", state)
    assert untrusted.returncode == 2 and "no trusted key" in untrusted.stderr

    env = {"VIGIL_AV_PUBLIC_KEY": str(public)}
    assert _vigil("definitions", "import", str(tmp_path / "v10.vab"), "--state-dir", state, env=env).returncode == 0
    down = _vigil("definitions", "import", str(tmp_path / "v9.vab"), "--state-dir", state, env=env)
    assert down.returncode == 2 and "a downgrade is refused" in down.stderr
    show = json.loads(_vigil("definitions", "show", "--output", "json", "--state-dir", state, env=env).stdout)
    assert show["version"] == 10 and show["hashes"] == {"sha256": 1} and show["yara_rules"] == 1
    installed = _vigil("scan", "custom", str(sample), "--output", "json", "--state-dir", state, env=env)
    assert installed.returncode == 1 and json.loads(installed.stdout)["definitions_version"] == 10


def test_quarantine_from_a_scan_then_restore_and_remove(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    target = tmp_path / "target"
    target.mkdir()
    for name in ("one.com", "two.com"):
        (target / name).write_bytes(eicar())
    os.chmod(target / "one.com", 0o640)
    r = _vigil("scan", "custom", str(target), "--quarantine", "--output", "json", "--state-dir", state)
    assert r.returncode == 1 and len(json.loads(r.stdout)["quarantined"]) == 2
    assert list(target.iterdir()) == []
    listed = json.loads(_vigil("threat", "quarantine", "list", "--output", "json", "--state-dir", state).stdout)
    by_path = {e["path"]: e for e in listed}
    assert set(by_path) == {str(target / "one.com"), str(target / "two.com")}
    assert by_path[str(target / "one.com")]["threat"]["name"] == "Virus:DOS/EICAR_Test_File"
    one, two = by_path[str(target / "one.com")]["id"], by_path[str(target / "two.com")]["id"]
    restored = _vigil("threat", "quarantine", "restore", one, "--output", "json", "--state-dir", state)
    assert restored.returncode == 0, restored.stderr
    assert (target / "one.com").read_bytes() == eicar() and (target / "one.com").stat().st_mode & 0o777 == 0o640
    assert _vigil("threat", "quarantine", "remove", two, "--state-dir", state).returncode == 0
    assert json.loads(_vigil("threat", "quarantine", "list", "--output", "json", "--state-dir", state).stdout) == []
    gone = _vigil("threat", "quarantine", "restore", two, "--state-dir", state)
    assert gone.returncode == 3 and f"nothing is quarantined under {two}" in gone.stderr


def test_exclusions_threat_list_and_health(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    target = tmp_path / "target"
    (target / "skip").mkdir(parents=True)
    (target / "eicar.com").write_bytes(eicar())
    (target / "skip" / "eicar.com").write_bytes(eicar())
    (target / "eicar.log").write_bytes(eicar())
    for kind, value in (("folder", str(target / "skip")), ("extension", "LOG")):
        added = _vigil("exclusion", "add", kind, value, "--state-dir", str(state), "--output", "json")
        assert added.returncode == 0, added.stderr
    assert json.loads(_vigil("exclusion", "list", "--state-dir", str(state), "--output", "json").stdout) == {
        "path": [], "folder": [f"{target}/skip/"], "extension": [".log"], "file_name": [], "process": []}
    bad = _vigil("exclusion", "add", "folder", "relative/dir", "--state-dir", str(state))
    assert bad.returncode == 2 and "must be an absolute path" in bad.stderr
    report = json.loads(_vigil("scan", "custom", str(target), "--output", "json", "--state-dir", str(state)).stdout)
    assert [d["path"] for d in report["detections"]] == [f"{target}/eicar.com"]
    threats = json.loads(_vigil("threat", "list", "--state-dir", str(state), "--output", "json").stdout)
    assert [(t["name"], t["path"], t["source"], t["action"]) for t in threats] == [
        ("Virus:DOS/EICAR_Test_File", f"{target}/eicar.com", "Custom scan", "None")]
    removed = _vigil("exclusion", "remove", "extension", ".log", "--state-dir", str(state))
    assert removed.returncode == 0
    assert _vigil("exclusion", "remove", "extension", ".log", "--state-dir", str(state)).returncode == 3
    health = json.loads(_vigil("health", "--state-dir", str(state), "--output", "json").stdout)
    assert health["agent_running"] is False and health["real_time_protection_enabled"] is False
    assert health["definitions_version"] == 0 and health["passive_mode_enabled"] is False
    audit = (state / "audit.jsonl").read_text()
    assert "av.exclusion_add" in audit and "av.exclusion_remove" in audit
