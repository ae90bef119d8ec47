"""RPM header blobs and an rpmdb.sqlite written by the tests themselves: the layout rpm 4.16+ stores (index
length, data length, 16-byte index entries, data), with the immutable-region entry rpm puts first."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

STRING, INT32, BIN = 6, 4, 7


def header(fields: dict[int, str | int], region: bool = True) -> bytes:
    entries: list[bytes] = []
    data = bytearray()
    if region:  # HEADER_IMMUTABLE: a 16-byte trailer the reader must skip
        entries.append(struct.pack(">IIiI", 63, BIN, 0, 16))
        data += bytes(16)
    for tag, value in fields.items():
        if isinstance(value, int):
            while len(data) % 4:
                data.append(0)
            entries.append(struct.pack(">IIiI", tag, INT32, len(data), 1))
            data += struct.pack(">i", value)
        else:
            entries.append(struct.pack(">IIiI", tag, STRING, len(data), 1))
            data += value.encode() + b"\0"
    return struct.pack(">II", len(entries), len(data)) + b"".join(entries) + bytes(data)


def package(name: str, version: str, release: str, arch: str = "x86_64", epoch: int | None = None,
            source: str | None = None) -> bytes:
    fields: dict[int, str | int] = {1000: name, 1001: version, 1002: release, 1022: arch}
    if epoch is not None:
        fields[1003] = epoch
    fields[1044] = source or f"{name}-{version}-{release}.src.rpm"
    fields[1004] = f"the {name} package"  # SUMMARY, a tag the reader ignores
    return header(fields)


def write_rpmdb(folder: Path, blobs: list[bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "rpmdb.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    conn.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs])
    conn.commit()
    conn.close()
    return db
