"""`vigil tvm feed build|import|status` as real processes: a signed, versioned bundle; tampered, foreign-signed
and older bundles refused with a clear error; feed ages and the stale warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.unit.tvm.corpus_support import REQUIREMENTS, write_corpus


def vigil(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(home / "cache")}
    return subprocess.run([sys.executable, "-m", "vigil", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def build(tmp_path: Path, out: str, sequence: int, key: str = "feed.key") -> tuple[Path, str]:
    r = vigil("tvm", "feed", "build", "--feeds", str(tmp_path / "vulns"), "--output", str(tmp_path / out),
              "--key", str(tmp_path / key), "--sequence", str(sequence), home=tmp_path)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("public key: "))
    return tmp_path / out, line.removeprefix("public key: ")


def rewrite(bundle: Path, out: Path, member: str, change: bytes | None = None, append: bytes = b"") -> Path:
    with zipfile.ZipFile(bundle) as z, zipfile.ZipFile(out, "w") as w:
        for name in z.namelist():
            data = z.read(name)
            if name == member:
                data = (change if change is not None else data) + append
            w.writestr(name, data)
    return out


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "vulns")


def test_build_import_status_and_scan(tmp_path: Path, corpus: Path) -> None:
    bundle, pub = build(tmp_path, "feeds-1.zip", 100)
    assert (tmp_path / "feed.key").stat().st_mode & 0o777 == 0o600
    with zipfile.ZipFile(bundle) as z:
        assert set(z.namelist()) == {"manifest.json", "manifest.sig", "feeds.sqlite"}
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["sequence"] == 100 and manifest["advisories"] == 9
    data = tmp_path / "data"
    r = vigil("tvm", "feed", "import", str(bundle), "--public-key", pub, "--data-dir", str(data), home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "imported feed bundle version 100" in r.stderr and "pinned" in r.stderr
    assert "debian-security-tracker: 4 advisories, newest entry 2025-02-12" in r.stderr
    assert "is stale" in r.stderr  # the test corpus's entries are from 2025
    assert (data / "tvm" / "feeds.sqlite").is_file()
    st = vigil("tvm", "feed", "status", "--data-dir", str(data), home=tmp_path)
    assert st.returncode == 1 and "version 100" in st.stderr and "warning: feed debian-security-tracker is stale" \
        in st.stderr
    fresh = vigil("tvm", "feed", "status", "--data-dir", str(data), "--max-age-days", "100000", home=tmp_path)
    assert fresh.returncode == 0 and "stale" not in fresh.stderr
    # the same bundle again: nothing to do; a newer one replaces it with the pinned key, no --public-key needed
    again = vigil("tvm", "feed", "import", str(bundle), "--data-dir", str(data), home=tmp_path)
    assert again.returncode == 0 and "already imported" in again.stderr
    newer, _ = build(tmp_path, "feeds-2.zip", 200)
    r2 = vigil("tvm", "feed", "import", str(newer), "--data-dir", str(data), home=tmp_path)
    assert r2.returncode == 0 and "imported feed bundle version 200" in r2.stderr
    # an older bundle, validly signed, is refused: no roll-back
    old = vigil("tvm", "feed", "import", str(bundle), "--data-dir", str(data), home=tmp_path)
    assert old.returncode == 2
    assert "version 100 is not newer than the imported version 200" in old.stderr
    # the standalone scanner reads bundles too, verifying the signature when given the key
    (tmp_path / "req.txt").write_text(REQUIREMENTS)
    s = vigil("tvm", "scan", "--feeds", str(newer), "--public-key", pub, "--requirements", str(tmp_path / "req.txt"),
              "-o", "json", home=tmp_path)
    assert s.returncode == 1, s.stderr
    assert [f["advisory"] for f in json.loads(s.stdout)] == ["PYSEC-2099-1"]
    assert "signature NOT checked" not in s.stderr
    unsigned = vigil("tvm", "scan", "--feeds", str(newer), "--requirements", str(tmp_path / "req.txt"), home=tmp_path)
    assert unsigned.returncode == 1 and "signature NOT checked" in unsigned.stderr


def test_tampered_and_foreign_bundles_are_refused(tmp_path: Path, corpus: Path) -> None:
    bundle, pub = build(tmp_path, "feeds.zip", 5)
    data = tmp_path / "data"
    store_changed = rewrite(bundle, tmp_path / "t1.zip", "feeds.sqlite", append=b"\x00")
    r = vigil("tvm", "feed", "import", str(store_changed), "--public-key", pub, "--data-dir", str(data),
              home=tmp_path)
    assert r.returncode == 2 and "bundle tampered: feeds.sqlite has SHA-256" in r.stderr
    m = json.loads(zipfile.ZipFile(bundle).read("manifest.json"))
    m["sequence"] = 999999
    manifest_changed = rewrite(bundle, tmp_path / "t2.zip", "manifest.json",
                               change=json.dumps(m, sort_keys=True, separators=(",", ":")).encode())
    r = vigil("tvm", "feed", "import", str(manifest_changed), "--public-key", pub, "--data-dir", str(data),
              home=tmp_path)
    assert r.returncode == 2 and "signature invalid" in r.stderr
    other, other_pub = build(tmp_path, "other.zip", 6, key="other.key")
    assert other_pub != pub
    r = vigil("tvm", "feed", "import", str(other), "--public-key", pub, "--data-dir", str(data), home=tmp_path)
    assert r.returncode == 2 and "signature invalid" in r.stderr
    assert not (data / "tvm" / "feeds.sqlite").exists()  # nothing refused was installed
    r = vigil("tvm", "feed", "import", str(bundle), "--data-dir", str(data), home=tmp_path)
    assert r.returncode == 2 and "no trusted feed-signing key" in r.stderr
    ok = vigil("tvm", "feed", "import", str(bundle), "--public-key", pub, "--data-dir", str(data), home=tmp_path)
    assert ok.returncode == 0, ok.stderr
    swap = vigil("tvm", "feed", "import", str(other), "--public-key", other_pub, "--data-dir", str(data),
                 home=tmp_path)
    assert swap.returncode == 2 and "differs from the key pinned" in swap.stderr
    for r in (swap,):
        assert "Traceback" not in r.stderr
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    r = vigil("tvm", "feed", "import", str(junk), "--public-key", pub, "--data-dir", str(data), home=tmp_path)
    assert r.returncode == 2 and "not a readable bundle" in r.stderr and "Traceback" not in r.stderr
