"""The quarantine keeps files neutralised and restores bytes, mode, owner and times; remove purges."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.unit.av.av_support import eicar
from vigil.av.builtin import EICAR_THREAT
from vigil.av.definitions import builtin
from vigil.av.engine import Engine
from vigil.av.quarantine import QuarantineError, QuarantineStore


def test_round_trip_preserves_bytes_mode_owner_and_times(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q")
    f = tmp_path / "dir" / "eicar.com"
    f.parent.mkdir()
    data = eicar()
    f.write_bytes(data)
    os.chmod(f, 0o751)  # noqa: S103 - an unusual mode, to prove restore keeps it
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        os.chown(f, *owner)
    os.utime(f, ns=(1_600_000_000_123_456_789, 1_600_000_001_987_654_321))
    entry = store.add(f, threat=EICAR_THREAT)
    assert not f.exists()
    stored = tmp_path / "q" / entry.id
    assert stat.S_IMODE((tmp_path / "q").stat().st_mode) == 0o700 and stat.S_IMODE(stored.stat().st_mode) == 0
    assert stat.S_IMODE((tmp_path / "q" / f"{entry.id}.json").stat().st_mode) == 0o600
    assert data not in stored.read_bytes()  # neutralised at rest
    assert Engine(builtin()).scan_file(str(stored))[0].clean
    [listed] = store.list()
    assert listed.path == str(f) and listed.threat == EICAR_THREAT.as_dict() and listed.mode == 0o751
    assert len(listed.sha256) == 64 and len(listed.sha1) == 40 and len(listed.md5) == 32
    store.restore(entry.id)
    st = f.stat()
    assert f.read_bytes() == data and stat.S_IMODE(st.st_mode) == 0o751 and (st.st_uid, st.st_gid) == owner
    assert st.st_mtime_ns == 1_600_000_001_987_654_321
    assert store.list() == [] and list((tmp_path / "q").iterdir()) == []


def test_restore_never_overwrites_and_remove_purges(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q")
    f = tmp_path / "file"
    f.write_bytes(b"payload")
    entry = store.add(f, entry_id="abc-1")
    f.write_bytes(b"a new file in its place")
    with pytest.raises(QuarantineError, match="exists again"):
        store.restore("abc-1")
    assert f.read_bytes() == b"a new file in its place"
    (tmp_path / "q" / "abc-1.unit0").write_text("a unit kept with the entry")
    store.remove(entry.id)
    assert list((tmp_path / "q").iterdir()) == []
    with pytest.raises(QuarantineError, match="nothing is quarantined under abc-1"):
        store.restore("abc-1")
    with pytest.raises(QuarantineError, match="is not a quarantine id"):
        store.get("../etc/passwd")


def test_a_damaged_copy_is_not_restored(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q")
    f = tmp_path / "file"
    f.write_bytes(b"payload bytes")
    entry = store.add(f)
    stored = tmp_path / "q" / entry.id
    os.chmod(stored, 0o600)
    raw = bytearray(stored.read_bytes())
    raw[-1] ^= 0xFF
    stored.write_bytes(bytes(raw))
    with pytest.raises(QuarantineError, match="no longer has SHA-256"):
        store.restore(entry.id)
    assert not f.exists() and store.get(entry.id).id == entry.id


def test_only_regular_files_are_quarantined(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q")
    with pytest.raises(QuarantineError, match="is not a regular file"):
        store.add(tmp_path)
    with pytest.raises(QuarantineError, match="does not exist"):
        store.add(tmp_path / "missing")
