"""The backup archive: files round-trip exactly; a changed byte, member or manifest, or a wrong passphrase, fails."""

from __future__ import annotations

import io
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vigil.deploy.backup_archive import (
    CHUNK,
    MANIFEST,
    PAYLOAD,
    ArchiveDamaged,
    ArchiveReader,
    ArchiveWriter,
    BackupError,
    Manifest,
    WrongPassphrase,
)

PASS = b"a long enough passphrase"
SIZES = {"empty": 0, "small": 5, "one-chunk": CHUNK, "chunk-and-a-byte": CHUNK + 1, "two-chunks": 2 * CHUNK}


def _write(tmp_path: Path, files: dict[str, bytes], passphrase: bytes = PASS) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    out = tmp_path / "backup.tar"
    writer = ArchiveWriter(out, passphrase, staging)
    for name, data in files.items():
        src = staging / "src"
        src.write_bytes(data)
        writer.add(name, src, 0o640)
    writer.finish(Manifest(
        vigil_version="test", created_at=datetime(2026, 12, 1, tzinfo=UTC), created_by="cli:test@host", host="host",
        store_kind="sqlite", schema_revision="0009", database_file=next(iter(files)),
        telemetry_counts={"DeviceProcessEvents": 7}, kdf=writer.kdf, key_check=writer.keys.key_check(),
        files=writer.entries,
    ))
    return out


def _files() -> dict[str, bytes]:
    return {f"data/{name}": os.urandom(size) for name, size in SIZES.items()}


def _read_all(path: Path, passphrase: bytes = PASS) -> dict[str, bytes]:
    reader = ArchiveReader(path)
    try:
        reader.unlock(passphrase)
        out = {}
        for entry in reader.manifest.files:
            buf = io.BytesIO()
            reader.extract(entry, buf)
            out[entry.name] = buf.getvalue()
        return out
    finally:
        reader.close()


def _payload_offset(path: Path, name: str) -> tuple[int, int]:
    with tarfile.open(path) as tar:
        m = tar.getmember(name)
        return m.offset_data, m.size


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def test_files_round_trip_exactly_across_chunk_boundaries(tmp_path: Path) -> None:
    files = _files()
    archive = _write(tmp_path, files)
    assert _read_all(archive) == files
    reader = ArchiveReader(archive)
    assert [(e.name, e.size, e.mode) for e in reader.manifest.files] == [
        (name, len(data), 0o640) for name, data in files.items()
    ]
    reader.close()


def test_nothing_is_stored_in_clear(tmp_path: Path) -> None:
    secret = b"-----BEGIN PRIVATE KEY----- the CA's key " * 100
    archive = _write(tmp_path, {"data/pki/ca.key": secret})
    raw = archive.read_bytes()
    assert b"BEGIN PRIVATE KEY" not in raw
    assert oct(archive.stat().st_mode & 0o777) == oct(0o600)


def test_a_wrong_passphrase_is_named_as_such(tmp_path: Path) -> None:
    archive = _write(tmp_path, _files())
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        _read_all(archive, b"not the passphrase at all")


@pytest.mark.parametrize("where", ["prefix", "first", "middle", "last"])
def test_one_changed_byte_anywhere_in_a_file_is_caught(tmp_path: Path, where: str) -> None:
    archive = _write(tmp_path, _files())
    offset, size = _payload_offset(archive, PAYLOAD + "data/two-chunks")
    _flip(archive, offset + {"prefix": 0, "first": 100, "middle": CHUNK + 50, "last": size - 1}[where])
    with pytest.raises(ArchiveDamaged, match="data/two-chunks"):
        _read_all(archive)


def test_a_changed_manifest_is_caught_even_when_it_still_parses(tmp_path: Path) -> None:
    archive = _write(tmp_path, _files())
    offset, size = _payload_offset(archive, MANIFEST)
    raw = archive.read_bytes()
    body = raw[offset:offset + size]
    doctored = body.replace(b'"DeviceProcessEvents": 7', b'"DeviceProcessEvents": 8')
    assert doctored != body and len(doctored) == size
    archive.write_bytes(raw[:offset] + doctored + raw[offset + size:])
    with pytest.raises(ArchiveDamaged, match=r"manifest\.json was changed"):
        _read_all(archive)


def test_files_swapped_between_members_do_not_decrypt(tmp_path: Path) -> None:
    """Each chunk's associated data names its file: a stored file moved under another name fails."""
    archive = _write(tmp_path, {"data/a": b"A" * 100, "data/b": b"B" * 100})
    a_off, a_size = _payload_offset(archive, PAYLOAD + "data/a")
    b_off, _ = _payload_offset(archive, PAYLOAD + "data/b")
    raw = bytearray(archive.read_bytes())
    raw[a_off:a_off + a_size], raw[b_off:b_off + a_size] = raw[b_off:b_off + a_size], raw[a_off:a_off + a_size]
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveDamaged, match="data/a"):
        _read_all(archive)


def _rewrite(archive: Path, drop: str | None = None, add: tuple[str, bytes] | None = None) -> None:
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(archive, "w") as tar:
        for m, data in members:
            if m.name != drop:
                tar.addfile(m, io.BytesIO(data))
        if add:
            info = tarfile.TarInfo(add[0])
            info.size = len(add[1])
            tar.addfile(info, io.BytesIO(add[1]))


def test_a_missing_or_an_extra_member_is_caught_before_decrypting(tmp_path: Path) -> None:
    archive = _write(tmp_path, _files())
    _rewrite(archive, drop=PAYLOAD + "data/small")
    with pytest.raises(ArchiveDamaged, match="does not hold it"):
        ArchiveReader(archive)
    archive = _write(tmp_path, _files())
    _rewrite(archive, add=(PAYLOAD + "data/planted", b"x"))
    with pytest.raises(ArchiveDamaged, match="does not list"):
        ArchiveReader(archive)


def test_a_truncated_archive_or_another_file_is_refused(tmp_path: Path) -> None:
    archive = _write(tmp_path, _files())
    archive.write_bytes(archive.read_bytes()[: CHUNK // 2])
    with pytest.raises(ArchiveDamaged):
        _read_all(archive)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ArchiveDamaged, match="not a Vigil backup"):
        ArchiveReader(other)


def test_a_name_climbing_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    archive = _write(tmp_path, {"data/../../etc/cron.d/x": b"* * * * * root sh"})
    with pytest.raises(ArchiveDamaged, match="unsafe path"):
        ArchiveReader(archive)


def test_a_short_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="at least 12"):
        _write(tmp_path, {"data/x": b"x"}, passphrase=b"short")
