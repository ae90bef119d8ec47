"""The scanning engine: a file's bytes against built-in, hash, YARA and heuristic signatures, archives unpacked."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from vigil.av import archives, heuristics
from vigil.av.builtin import EICAR_MAX_SIZE, EICAR_THREAT, is_eicar
from vigil.av.cache import VerdictCache, key_of
from vigil.av.definitions import Definitions
from vigil.av.model import Detection, Threat, Verdict
from vigil.av.yara import ThreadScanners

_READ_WHOLE = 64 << 20  # files up to this are read once and every signature runs on the bytes
_HEAD = 4 << 20  # what heuristics see of a larger file


@dataclass(frozen=True)
class EngineOptions:
    limits: archives.Limits = field(default_factory=archives.Limits)
    temp_dirs: Sequence[str] = heuristics.TEMP_DIRS
    heuristics: Sequence[heuristics.Heuristic] = heuristics.HEURISTICS


class Engine:
    """Thread-safe: share one engine between scan threads (each gets its own YARA-X Scanner)."""

    def __init__(self, definitions: Definitions, options: EngineOptions | None = None,
                 cache: VerdictCache | None = None) -> None:
        self.definitions = definitions
        self.options = options or EngineOptions()
        self.cache = cache if cache is not None else VerdictCache()
        self._yara = ThreadScanners(definitions.rules) if definitions.rules is not None else None
        self._wanted = definitions.hashes.wanted()
        self._has_hashes = len(definitions.hashes) > 0

    # -- pure: bytes in, threats out ------------------------------------------------------------------------
    def threats_in(self, data: bytes, path: str) -> list[Threat]:
        """Every signature but archives, over one blob."""
        found: list[Threat] = []
        if len(data) <= EICAR_MAX_SIZE and is_eicar(data):
            found.append(EICAR_THREAT)
        if self._has_hashes:
            digests = {a: hashlib.new(a, data).digest() for a in self._wanted}
            hit = self.definitions.hashes.lookup(digests)
            if hit is not None:
                found.append(hit)
        if self._yara is not None:
            found.extend(self._yara.scan(data, path))
        found.extend(heuristics.run(heuristics.Context(path, data, self.options.temp_dirs), self.options.heuristics))
        return found

    def scan_bytes(self, data: bytes, path: str) -> Verdict:
        """A verdict on a file's whole content, archives unpacked within the limits."""
        detections: list[Detection] = []
        notes: list[str] = []
        self._scan_level(data, path, None, 0, archives.Budget(self.options.limits), detections, notes)
        return Verdict(tuple(detections), tuple(notes))

    def _scan_level(self, data: bytes, path: str, member: str | None, depth: int, budget: archives.Budget,
                    detections: list[Detection], notes: list[str]) -> None:
        name = f"{path}/{member}" if member else path
        detections.extend(Detection(path, t, member) for t in self.threats_in(data, name))
        if archives.kind(data) is None:
            return
        where = f"{path}->{member}" if member else path
        if depth >= self.options.limits.max_depth:
            notes.append(f"{where}: not unpacked: archives nested deeper than {self.options.limits.max_depth}")
            return
        try:
            for inner_name, inner in archives.members(data, budget):
                inner_member = f"{member}->{inner_name}" if member else inner_name
                self._scan_level(inner, path, inner_member, depth + 1, budget, detections, notes)
        except archives.LimitExceeded as e:
            notes.append(f"{where}: unpacking stopped: {e}")
        except archives.UNREADABLE as e:
            notes.append(f"{where}: damaged archive: {e}")

    # -- files: stat, cache, read ---------------------------------------------------------------------------
    def scan_file(self, path: str) -> tuple[Verdict, int]:
        """(verdict, bytes read) for a regular file; a cached verdict when the file is unchanged."""
        st = os.stat(path, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return Verdict(), 0
        key = key_of(st, self.definitions.cache_version)
        cached = self.cache.get(key)
        if cached is not None:
            return Verdict(cached.detections, cached.incomplete, cached=True), 0
        flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NOATIME if _noatime() else 0)
        with os.fdopen(os.open(path, flags), "rb", buffering=0) as f:
            verdict, size = self._scan_stream(f, st, path)
        self.cache.put(key, verdict)
        return verdict, size

    def scan_open(self, fd: int, path: str) -> tuple[Verdict, int]:
        """``scan_file`` through a descriptor someone else opened (on-access scanning: the file the kernel
        handed over, so no second open happens and no rename can swap it). ``fd`` is read from offset 0 and
        left open; its own offset moves."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Verdict(), 0
        key = key_of(st, self.definitions.cache_version)
        cached = self.cache.get(key)
        if cached is not None:
            return Verdict(cached.detections, cached.incomplete, cached=True), 0
        with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
            f.seek(0)
            verdict, size = self._scan_stream(f, st, path)
        self.cache.put(key, verdict)
        return verdict, size

    def cached(self, fd: int) -> Verdict | None:
        """The cached verdict of the open file ``fd`` if it is unchanged since it was scanned, else None (cheap:
        one fstat and a lookup; on-access scanning answers from it without handing the file to a scan thread)."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Verdict()
        return self.cache.get(key_of(st, self.definitions.cache_version))

    def _scan_stream(self, f: io.RawIOBase, st: os.stat_result, path: str) -> tuple[Verdict, int]:
        if st.st_size <= _READ_WHOLE:
            data = f.readall() or b""
            return self.scan_bytes(data, path), len(data)
        return self._scan_large(f, path)

    def _scan_large(self, f: io.RawIOBase, path: str) -> tuple[Verdict, int]:
        """Hashes streamed, YARA over the mapped file, heuristics over the head; archives this big not unpacked."""
        hashers = {a: hashlib.new(a) for a in self._wanted} if self._has_hashes else {}
        head = b""
        size = 0
        while chunk := f.read(8 << 20):
            if len(head) < _HEAD:
                head += chunk[: _HEAD - len(head)]
            for h in hashers.values():
                h.update(chunk)
            size += len(chunk)
        found: list[Threat] = []
        if hashers:
            hit = self.definitions.hashes.lookup({a: h.digest() for a, h in hashers.items()})
            if hit is not None:
                found.append(hit)
        if self._yara is not None:
            found.extend(self._yara.scan_file(path))
        found.extend(heuristics.run(heuristics.Context(path, head, self.options.temp_dirs), self.options.heuristics))
        notes = (f"{path}: larger than {_READ_WHOLE} bytes: not unpacked as an archive",) if archives.kind(head) else ()
        return Verdict(tuple(Detection(path, t) for t in found), notes), size


def _noatime() -> bool:
    return os.geteuid() == 0  # O_NOATIME is refused on files the caller does not own, unless root
