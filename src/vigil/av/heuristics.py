"""Linux heuristics, each with a stable id (documented in docs/antivirus.md); pure functions of path and bytes.

Raising ``HEURISTICS_VERSION`` tells bundles built for older engines apart: a bundle asks for the version
it was built with, and an engine refuses a bundle newer than itself.
"""

from __future__ import annotations

import math
import re
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vigil.av.model import Severity, Source, Threat, ThreatType

HEURISTICS_VERSION = 1
TEMP_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/")  # noqa: S108 (where droppers land: what is looked for)
ELF_MAGIC = b"\x7fELF"
_ENTROPY_PACKED = 7.2  # bits per byte: compiled code sits near 5.5-6.5, compressed or encrypted data near 8
_ENTROPY_MIN_SIZE = 4096
_PACKED_MAX_SECTIONS = 4
_HOOK_MAX_EXPORTS = 200  # a hiding library exports a handful of hooks; sanitizers and fakeroot export thousands


@dataclass(frozen=True)
class Context:
    """What a heuristic may look at: the file's path, its bytes, and where temporary folders are."""

    path: str
    data: bytes
    temp_dirs: Sequence[str] = TEMP_DIRS


@dataclass(frozen=True)
class Heuristic:
    id: str
    threat: Threat
    summary: str
    check: Callable[[Context], bool]


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


def sample(data: bytes, pieces: int = 16, piece: int = 16 << 10) -> bytes:
    """Pieces spread over the file: its entropy in a few milliseconds, whatever its size."""
    if len(data) <= pieces * piece:
        return data
    step = len(data) // pieces
    return b"".join(data[i * step:i * step + piece] for i in range(pieces))


def _in_temp(ctx: Context) -> bool:
    return ctx.path.startswith(tuple(ctx.temp_dirs))


def _packed_elf_in_temp(ctx: Context) -> bool:
    if not ctx.data.startswith(ELF_MAGIC) or not _in_temp(ctx):
        return False
    if b"UPX!" in ctx.data[:4096] or b"UPX!" in ctx.data[-4096:]:
        return True
    # Packers leave few or no section headers; a linked library keeps dozens (and may carry compressed data).
    if len(ctx.data) < _ENTROPY_MIN_SIZE or _section_count(ctx.data) > _PACKED_MAX_SECTIONS:
        return False
    return entropy(sample(ctx.data)) >= _ENTROPY_PACKED


def _section_count(data: bytes) -> int:
    try:
        return int(struct.unpack_from("<H", data, 0x3C if data[4] == 2 else 0x30)[0])
    except (struct.error, IndexError):
        return 0


_SCRIPT_HEAD = re.compile(rb"\A#!\s*\S*(?:/|env\s+)(?:ba|da|z|k|a)?sh\b")
_URL = rb"(?:https?|ftp)://\S+"
_FETCH = rb"(?:curl|wget|fetch|busybox\s+wget|tftp)\b[^\n|;]*?" + _URL
_PIPE_SHELL = re.compile(_FETCH + rb"[^\n]*?\|\s*(?:sudo\s+)?(?:/bin/|/usr/bin/)?(?:ba|da|z)?sh\b")
_EXEC_AFTER = re.compile(rb"chmod\s+(?:[0-7]*7[0-7]*|\+x|[ugoa]*\+[rw]*x)\s+(\S+)")
_FETCH_RE = re.compile(_FETCH)
_MAX_SCRIPT = 1 << 20


def _shell_dropper(ctx: Context) -> bool:
    """A shell script that downloads and runs: fetch piped to a shell, or fetch, chmod +x and run the file."""
    data = ctx.data
    if len(data) > _MAX_SCRIPT or data.startswith(ELF_MAGIC) or b"\x00" in data[:4096]:
        return False
    if not (_SCRIPT_HEAD.match(data) or ctx.path.endswith(".sh")):
        return False
    if _PIPE_SHELL.search(data):
        return True
    if not _FETCH_RE.search(data):
        return False
    for m in _EXEC_AFTER.finditer(data):
        target = m.group(1).strip(b"\"';&|")
        rest = data[m.end():]
        name = re.escape(target.rsplit(b"/", 1)[-1])
        if name and re.search(rb"(?:^|[\s;&|])(?:\./|/\S*/|\$\S*/)?" + name + rb"(?:\s|$|;|&)", rest, re.MULTILINE):
            return True
    return False


_POOL = re.compile(rb"stratum\d?\+(?:tcp|ssl|tls)://[\w.-]+:\d+", re.IGNORECASE)
_MINER_TRAITS = (b"donate-level", b"randomx", b"cryptonight", b"--cpu-priority", b"nicehash", b"hashrate",
                 b"xmrig", b"\"pools\"")


def _miner(ctx: Context) -> bool:
    """A mining pool address (stratum+tcp://host:port) together with a miner's configuration trait."""
    m = _POOL.search(ctx.data)
    if m is None:
        return False
    lower = ctx.data.lower()
    return any(t in lower for t in _MINER_TRAITS)


_HIDING_HOOKS = {b"readdir", b"readdir64"}
_HOOKED_ALSO = {b"opendir", b"fopen", b"fopen64", b"stat", b"lstat", b"__xstat", b"open", b"access", b"kill",
                b"unlink", b"pcap_loop", b"accept", b"getdents", b"getdents64"}
_STD_LIBC = re.compile(rb"GNU C Library|musl libc")


def _elf_dynamic_symbols(data: bytes) -> tuple[set[bytes], set[bytes]]:
    """(defined, undefined) dynamic symbol names of a little-endian ELF; empty sets if it cannot be read."""
    try:
        cls, endian = data[4], data[5]
        if endian != 1 or cls not in (1, 2):
            return set(), set()
        wide = cls == 2
        if wide:
            shoff, = struct.unpack_from("<Q", data, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        else:
            shoff, = struct.unpack_from("<I", data, 0x20)
            shentsize, shnum = struct.unpack_from("<HH", data, 0x2E)
        sections = []
        for i in range(min(shnum, 512)):
            off = shoff + i * shentsize
            if wide:
                _, stype, _, _, soff, ssize, link, _, _, entsize = struct.unpack_from("<IIQQQQIIQQ", data, off)
            else:
                _, stype, _, _, soff, ssize, link, _, _, entsize = struct.unpack_from("<IIIIIIIIII", data, off)
            sections.append((stype, soff, ssize, link, entsize))
        defined: set[bytes] = set()
        undefined: set[bytes] = set()
        for stype, soff, ssize, link, entsize in sections:
            if stype != 11 or not entsize or link >= len(sections):  # SHT_DYNSYM
                continue
            _, stroff, strsize, _, _ = sections[link]
            strtab = data[stroff:stroff + strsize]
            for j in range(1, min(ssize // entsize, 100_000)):
                base = soff + j * entsize
                if wide:
                    name_off, info, _, shndx = struct.unpack_from("<IBBH", data, base)
                else:
                    name_off, = struct.unpack_from("<I", data, base)
                    info, _, shndx = struct.unpack_from("<BBH", data, base + 12)
                if info >> 4 not in (1, 2):  # global or weak bindings only
                    continue
                end = strtab.find(b"\x00", name_off)
                name = strtab[name_off:end if end >= 0 else None].split(b"@", 1)[0]
                (defined if shndx else undefined).add(name)
        return defined, undefined
    except (struct.error, IndexError):
        return set(), set()


def _preload_rootkit(ctx: Context) -> bool:
    """An LD_PRELOAD rootkit: a shared object (not libc) that exports readdir to hide files, and calls dlsym to
    reach the real one; or /etc/ld.so.preload naming a library in a temporary or hidden folder."""
    data = ctx.data
    if ctx.path.endswith("/etc/ld.so.preload") and not data.startswith(ELF_MAGIC):
        for line in data.decode("utf-8", "replace").split():
            if line.startswith(tuple(ctx.temp_dirs)) or "/." in line:
                return True
        return False
    if not data.startswith(ELF_MAGIC) or len(data) < 64 or struct.unpack_from("<H", data, 16)[0] != 3:  # ET_DYN
        return False
    defined, undefined = _elf_dynamic_symbols(data)
    if not (defined & _HIDING_HOOKS) or b"dlsym" not in undefined or len(defined) > _HOOK_MAX_EXPORTS:
        return False
    if _STD_LIBC.search(data):
        return False
    return bool(defined & _HOOKED_ALSO) or b"ld.so.preload" in data


HEURISTICS: tuple[Heuristic, ...] = (
    Heuristic("VH-ELF-TMP-PACKED",
              Threat("Trojan:Linux/PackedTempElf.H", ThreatType.HEURISTIC, Severity.MEDIUM, Source.HEURISTIC,
                     "VH-ELF-TMP-PACKED"),
              "ELF in /tmp, /var/tmp or /dev/shm that is UPX-packed or of entropy >= 7.2 bits/byte",
              _packed_elf_in_temp),
    Heuristic("VH-SH-DROPPER",
              Threat("TrojanDownloader:Linux/ShellDropper.H", ThreatType.HEURISTIC, Severity.HIGH,
                     Source.HEURISTIC, "VH-SH-DROPPER"),
              "shell script that downloads and executes (curl|wget ... | sh, or fetch + chmod +x + run)",
              _shell_dropper),
    Heuristic("VH-MINER-POOL",
              Threat("PUA:Linux/CoinMiner.H", ThreatType.PUA, Severity.MEDIUM, Source.HEURISTIC, "VH-MINER-POOL"),
              "stratum+tcp:// mining-pool address with a miner's configuration trait (donate-level, randomx, ...)",
              _miner),
    Heuristic("VH-PRELOAD-ROOTKIT",
              Threat("Rootkit:Linux/PreloadHook.H", ThreatType.HEURISTIC, Severity.SEVERE, Source.HEURISTIC,
                     "VH-PRELOAD-ROOTKIT"),
              "shared object exporting readdir and importing dlsym (LD_PRELOAD hiding), or /etc/ld.so.preload "
              "naming a library in a temporary or hidden folder",
              _preload_rootkit),
)
BY_ID = {h.id: h for h in HEURISTICS}


def run(ctx: Context, enabled: Sequence[Heuristic] = HEURISTICS) -> list[Threat]:
    return [h.threat for h in enabled if h.check(ctx)]
