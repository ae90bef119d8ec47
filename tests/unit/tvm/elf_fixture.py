"""A minimal 64-bit little-endian ELF file with a `.go.buildinfo` section, as Go 1.18+ writes it."""

from __future__ import annotations

import struct


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def go_binary(go_version: str, modinfo: str) -> bytes:
    mod = b"0" * 16 + modinfo.encode() + b"\n" + b"1" * 16 if modinfo else b""
    if mod:  # the sentinel test reads the byte before the closing 16-byte sentinel
        mod = b"0" * 16 + modinfo.encode().rstrip(b"\n") + b"\n" + b"1" * 16
    info = b"\xff Go buildinf:" + bytes([8, 2]) + bytes(16)
    info += _uvarint(len(go_version)) + go_version.encode() + _uvarint(len(mod)) + mod
    names = b"\x00.shstrtab\x00.go.buildinfo\x00"
    names_off = 64
    info_off = names_off + len(names)
    shoff = info_off + len(info)
    shoff += (-shoff) % 8
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 1)
    body = bytes(header) + names + info
    body += bytes(shoff - len(body))

    def sh(name: int, off: int, size: int) -> bytes:
        s = bytearray(64)
        struct.pack_into("<I", s, 0, name)
        struct.pack_into("<QQ", s, 0x18, off, size)
        return bytes(s)

    return body + sh(0, 0, 0) + sh(1, names_off, len(names)) + sh(11, info_off, len(info))
