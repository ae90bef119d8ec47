"""Fixtures the antivirus tests make: nothing malicious is stored in the repository, all is built at run time."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile

# EICAR's test string, assembled here from pieces so the repository never holds it whole.
_EICAR_PARTS = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-", "ANTIVIRUS-TEST-FILE!$H+H*")


def eicar() -> bytes:
    return "".join(_EICAR_PARTS).encode()


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_gz_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def elf(body: bytes, e_type: int = 2, shnum: int = 0, sections: bytes = b"", shoff: int = 0) -> bytes:
    """A minimal little-endian ELF64 header followed by ``body``."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header = ident + struct.pack("<HHIQQQIHHHHHH", e_type, 62, 1, 0x400000, 64, shoff, 0, 64, 56, 0, 64, shnum, 0)
    return header + body + sections


def shared_object(defined: list[str], undefined: list[str], extra: bytes = b"") -> bytes:
    """An ELF64 ET_DYN with a .dynsym that defines and imports the given symbols (what the rootkit check reads)."""
    names = b"\x00"
    offsets = []
    for n in defined + undefined:
        offsets.append(len(names))
        names += n.encode() + b"\x00"
    syms = bytes(24)  # the null symbol
    for i, off in enumerate(offsets):
        shndx = 12 if i < len(defined) else 0
        syms += struct.pack("<IBBHQQ", off, (1 << 4) | 2, 0, shndx, 0x1000 if shndx else 0, 0)
    data_off = 64
    strtab_off = data_off + len(extra)
    dynsym_off = strtab_off + len(names)
    shoff = dynsym_off + len(syms)
    shoff += (-shoff) % 8
    pad = bytes(shoff - dynsym_off - len(syms))
    null_sh = bytes(64)
    strtab_sh = struct.pack("<IIQQQQIIQQ", 0, 3, 0, 0, strtab_off, len(names), 0, 0, 1, 0)
    dynsym_sh = struct.pack("<IIQQQQIIQQ", 0, 11, 0, 0, dynsym_off, len(syms), 1, 1, 8, 24)
    return elf(extra + names + syms + pad, e_type=3, shnum=3, sections=null_sh + strtab_sh + dynsym_sh, shoff=shoff)
