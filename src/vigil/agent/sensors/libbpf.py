"""libbpf through ctypes: open, load and attach a compiled BPF object, and drain its ring buffer."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from vigil.agent.errors import SensorUnavailable

log = logging.getLogger(__name__)

LIBBPF_NAMES = ("libbpf.so.1", "libbpf.so")

_RingCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
# libbpf_print_fn_t: (level, format, va_list). A va_list argument is a pointer on x86-64 and
# arm64 (an array type there, passed by reference), so it goes to vsnprintf as a void pointer.
_PrintCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)  # LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG

MOUNTINFO = "/proc/self/mountinfo"
CGROUP_SECTION = "cgroup/"  # programs libbpf cannot attach by themselves: they need a cgroup's fd
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


# The package's CO-RE objects and the stamp of the sources they were built from (scripts/build-bpf.sh).
SHIPPED_DIR = Path(__file__).resolve().parent / "bpf"
SOURCES_STAMP = "objects.sha256"


def describe_object(path: Path) -> str:
    """Where a loaded BPF object came from, for the sensor's health: the package's own (shipped, current with
    its sources or older than them) or one a setting names."""
    if path.resolve().parent != SHIPPED_DIR:
        return f"CO-RE object {path} (named by the settings)"
    sources = [*sorted(SHIPPED_DIR.glob("*.bpf.c")), SHIPPED_DIR / "vigil.bpf.h"]
    stamp = SHIPPED_DIR / SOURCES_STAMP
    try:
        recorded = stamp.read_text().strip()
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    except OSError:  # an installed wheel carries the objects, not their sources
        return f"shipped CO-RE object {path}"
    if digest != recorded:
        return f"shipped CO-RE object {path}, older than its sources ({SOURCES_STAMP} differs: run `make bpf`)"
    return f"shipped CO-RE object {path}, built from the current sources"


class BpfError(SensorUnavailable):
    """A BPF step failed; says which (open, load, attach...) and the kernel's errno text."""

    def __init__(self, step: str, err: int, detail: str = "") -> None:
        text = os.strerror(err) if err > 0 else "unknown error"
        super().__init__(f"{step}: {text}{f' ({detail})' if detail else ''}")
        self.step = step
        self.errno = err


class _Lib:
    """The libbpf functions used here, with their C signatures."""

    def __init__(self, cdll: ctypes.CDLL) -> None:
        p, i, c = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
        sigs: dict[str, tuple[list[object], object]] = {
            "libbpf_set_print": ([p], p),
            "bpf_object__open_file": ([c, p], p),
            "bpf_object__load": ([p], i),
            "bpf_object__close": ([p], None),
            "bpf_object__next_program": ([p, p], p),
            "bpf_program__name": ([p], c),
            "bpf_program__section_name": ([p], c),
            "bpf_program__set_autoload": ([p, ctypes.c_bool], i),
            "bpf_program__autoload": ([p], ctypes.c_bool),
            "bpf_program__attach": ([p], p),
            "bpf_program__attach_cgroup": ([p, i], p),
            "bpf_link__destroy": ([p], i),
            "bpf_object__find_map_by_name": ([p, c], p),
            "bpf_map__fd": ([p], i),
            "bpf_map_lookup_elem": ([i, p, p], i),
            "ring_buffer__new": ([i, _RingCallback, p, p], p),
            "ring_buffer__poll": ([p, i], i),
            "ring_buffer__consume": ([p], i),
            "ring_buffer__epoll_fd": ([p], i),
            "ring_buffer__free": ([p], None),
        }
        for name, (args, res) in sigs.items():
            fn = getattr(cdll, name)
            fn.argtypes = args
            fn.restype = res
            setattr(self, name, fn)

    def __getattr__(self, name: str) -> Callable[..., Any]:  # typed access for the attributes set above
        raise AttributeError(name)


_lib: _Lib | None = None
_lib_error: str = ""
# libbpf keeps one print hook per process; the ctypes thunk must live as long as libbpf can call it.
_print_hook: object = None


def _libc_vsnprintf() -> Callable[..., int]:
    libc = ctypes.CDLL(None)
    fn = libc.vsnprintf
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


def load_libbpf() -> _Lib:
    """The shared library, loaded once; raises BpfError naming what is missing."""
    global _lib, _lib_error, _print_hook
    if _lib is not None:
        return _lib
    if _lib_error:
        raise BpfError("libbpf", errno.ENOENT, _lib_error)
    cdll = None
    for name in (*LIBBPF_NAMES, ctypes.util.find_library("bpf")):
        if not name:
            continue
        try:
            cdll = ctypes.CDLL(name, use_errno=True)
            break
        except OSError:
            continue
    try:
        if cdll is None:
            raise AttributeError("libbpf.so.1 not found (Debian package libbpf1)")
        lib = _Lib(cdll)
    except AttributeError as e:  # an old libbpf lacks a function used here
        _lib_error = f"libbpf unusable: {e}"
        raise BpfError("libbpf", errno.ENOENT, _lib_error) from None
    vsnprintf = _libc_vsnprintf()

    def route(level: int, fmt: bytes, args: int) -> int:
        buf = ctypes.create_string_buffer(1024)
        vsnprintf(buf, len(buf), fmt, args)
        log.log(_LEVELS[level] if 0 <= level < len(_LEVELS) else logging.DEBUG, "%s",
                buf.value.decode("utf-8", "replace").rstrip())
        return 0

    _print_hook = _PrintCallback(route)
    lib.libbpf_set_print(_print_hook)
    _lib = lib
    return lib


def _errno_of(ret: int) -> int:
    """libbpf 1.x returns -errno; pointers come back NULL with errno set."""
    return -ret if ret < 0 else ctypes.get_errno() or errno.EINVAL


class RingBuffer:
    """A BPF ring buffer's consumer: each poll copies the waiting records' bytes into ``batch``.

    The callback only copies (decoding a record while libbpf holds the ring would keep the
    producer's space reserved longer, and a ctypes callback is the dearest part per record)."""

    def __init__(self, lib: _Lib, map_fd: int) -> None:
        self._lib = lib
        self.batch: list[bytes] = []
        append, string_at = self.batch.append, ctypes.string_at

        def on_record(_ctx: int | None, data: int, size: int) -> int:
            append(string_at(data, size))
            return 0

        self._callback = _RingCallback(on_record)  # referenced for as long as the ring exists
        ctypes.set_errno(0)
        self._rb = lib.ring_buffer__new(map_fd, self._callback, None, None)
        if not self._rb:
            raise BpfError("ring_buffer__new", _errno_of(0))

    def fileno(self) -> int:
        """An epoll fd that becomes readable when records wait (select/poll accept it)."""
        return int(self._lib.ring_buffer__epoll_fd(self._rb))

    def consume(self) -> list[bytes]:
        """Every record waiting now, without blocking."""
        ret = int(self._lib.ring_buffer__consume(self._rb))
        if ret < 0 and ret != -errno.EINTR:
            raise BpfError("ring_buffer__consume", -ret)
        out = self.batch[:]
        self.batch.clear()
        return out

    def poll(self, timeout_ms: int) -> list[bytes]:
        ret = int(self._lib.ring_buffer__poll(self._rb, timeout_ms))
        if ret < 0 and ret != -errno.EINTR:
            raise BpfError("ring_buffer__poll", -ret)
        out = self.batch[:]
        self.batch.clear()
        return out

    def close(self) -> None:
        if self._rb:
            self._lib.ring_buffer__free(self._rb)
            self._rb = None


def cgroup2_root(mountinfo: str = MOUNTINFO) -> str | None:
    """Where the cgroup-v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified beside v1
    controllers), or None. A mount of the hierarchy's own root is preferred over a bind mount of a
    sub-cgroup, which would cover only the processes below it."""
    found: list[tuple[str, str]] = []
    with open(mountinfo) as f:
        for line in f:
            # "id parent major:minor root mount-point options [optional...] - fstype source super-options"
            fields = line.split()
            try:
                fstype = fields[fields.index("-", 6) + 1]
            except (ValueError, IndexError):
                continue
            if fstype == "cgroup2":
                found.append((fields[3], _OCTAL_ESCAPE.sub(lambda m: chr(int(m[1], 8)), fields[4])))
    return next((point for root, point in found if root == "/"), found[0][1] if found else None)


class BpfObject:
    """An opened, loaded and attached BPF object; ``close`` detaches every program.

    Programs named in ``optional`` may fail to load or attach without failing the object: ``unattached``
    then says why for each, and the others run. cgroup programs attach to the cgroup-v2 root, whose fd is
    kept open while they are attached."""

    def __init__(self, path: Path, optional: Collection[str] = (), mountinfo: str = MOUNTINFO) -> None:
        self.path = path
        self._lib = lib = load_libbpf()
        self._links: list[int] = []
        self._obj: int | None = None
        self._mountinfo = mountinfo
        self._cgroup: str | BpfError | None = None  # the cgroup-v2 root, or why there is none; looked up once
        self._cgroup_fd = -1
        self.programs: list[str] = []
        self.unattached: dict[str, str] = {}
        if not path.is_file():
            raise BpfError(f"open {path}", errno.ENOENT, "the BPF object is not shipped and not built here:"
                           " `make bpf` builds it where clang, bpftool and libbpf-dev are installed")
        try:
            self._open_and_load(set(optional))
            prog = lib.bpf_object__next_program(self._obj, None)
            while prog:
                name = ctypes.string_at(lib.bpf_program__name(prog)).decode()
                if lib.bpf_program__autoload(prog):
                    try:
                        self._links.append(self._attach(prog, name))
                        self.programs.append(name)
                    except BpfError as e:
                        if name not in optional:
                            raise
                        self.unattached[name] = str(e)
                prog = lib.bpf_object__next_program(self._obj, prog)
        except BaseException:
            self.close()
            raise

    def _open_and_load(self, optional: set[str]) -> None:
        """Opens and loads the object. Optional programs that cannot run here are not loaded: cgroup ones
        without a cgroup-v2 mount, and all of them once the object failed to load with them (a kernel
        whose verifier refuses them still runs the rest)."""
        lib = self._lib
        skip: dict[str, str] = {}
        while True:
            ctypes.set_errno(0)
            obj = lib.bpf_object__open_file(str(self.path).encode(), None)
            if not obj:
                raise BpfError(f"open {self.path}", _errno_of(0))
            self._obj = int(obj)
            loaded: list[str] = []
            prog = lib.bpf_object__next_program(self._obj, None)
            while prog:
                name = ctypes.string_at(lib.bpf_program__name(prog)).decode()
                if name in optional and name not in skip and self._section(prog).startswith(CGROUP_SECTION):
                    try:
                        self._cgroup_root()
                    except BpfError as e:
                        skip[name] = str(e)
                if name in skip:
                    lib.bpf_program__set_autoload(prog, False)
                elif name in optional:
                    loaded.append(name)
                prog = lib.bpf_object__next_program(self._obj, prog)
            ret = int(lib.bpf_object__load(self._obj))
            if not ret:
                self.unattached.update(skip)
                return
            failure = BpfError(f"load {self.path.name}", _errno_of(ret), "the verifier's log is in the agent log")
            lib.bpf_object__close(self._obj)
            self._obj = None
            if not loaded:
                raise failure
            log.warning("%s; loading it again without %s", failure, ", ".join(loaded))
            skip.update(dict.fromkeys(loaded, f"not loaded: {failure}"))

    def _section(self, prog: int) -> str:
        return ctypes.string_at(self._lib.bpf_program__section_name(prog)).decode()

    def _cgroup_root(self) -> str:
        """The cgroup-v2 root's mount point; raises BpfError saying why there is none."""
        if self._cgroup is None:
            try:
                root = cgroup2_root(self._mountinfo)
                self._cgroup = root if root is not None else BpfError(
                    "find the cgroup-v2 root", errno.ENOENT, f"cgroup v2 is not mounted (none in {self._mountinfo})")
            except OSError as e:
                self._cgroup = BpfError(f"read {self._mountinfo}", e.errno or errno.EIO)
        if isinstance(self._cgroup, BpfError):
            raise self._cgroup
        return self._cgroup

    def _attach(self, prog: int, name: str) -> int:
        """The program's link; a cgroup program is attached to the cgroup-v2 root."""
        if not self._section(prog).startswith(CGROUP_SECTION):
            ctypes.set_errno(0)
            link = self._lib.bpf_program__attach(prog)
            if not link:
                raise BpfError(f"attach {name}", _errno_of(0))
            return int(link)
        root = self._cgroup_root()
        if self._cgroup_fd < 0:
            try:
                self._cgroup_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
            except OSError as e:
                raise BpfError(f"open the cgroup-v2 root {root}", e.errno or errno.EINVAL) from None
        ctypes.set_errno(0)
        link = self._lib.bpf_program__attach_cgroup(prog, self._cgroup_fd)
        if not link:
            raise BpfError(f"attach {name} to the cgroup {root}", _errno_of(0))
        return int(link)

    def map_fd(self, name: str) -> int:
        assert self._obj is not None, "closed"
        m = self._lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise BpfError(f"map {name}", errno.ENOENT, f"not in {self.path.name}")
        return int(self._lib.bpf_map__fd(m))

    def read_u64(self, map_name: str, key: int = 0) -> int:
        """One u64 value of an array map (e.g. a counter the programs keep)."""
        k, v = ctypes.c_uint32(key), ctypes.c_uint64(0)
        ret = int(self._lib.bpf_map_lookup_elem(self.map_fd(map_name), ctypes.byref(k), ctypes.byref(v)))
        if ret:
            raise BpfError(f"lookup {map_name}[{key}]", _errno_of(ret))
        return v.value

    def ring_buffer(self, map_name: str) -> RingBuffer:
        return RingBuffer(self._lib, self.map_fd(map_name))

    def close(self) -> None:
        for link in self._links:
            self._lib.bpf_link__destroy(link)
        self._links.clear()
        if self._cgroup_fd >= 0:  # only once nothing is attached through it
            os.close(self._cgroup_fd)
            self._cgroup_fd = -1
        if self._obj is not None:
            self._lib.bpf_object__close(self._obj)
            self._obj = None


class EventSource:
    """One of Vigil's objects loaded and attached, with its "events" ring buffer open and the count of
    records that found it full (the "dropped" map every object has, from bpf/vigil.bpf.h)."""

    def __init__(self, path: Path, optional: Collection[str] = (), mountinfo: str = MOUNTINFO) -> None:
        self.path = path
        self._obj = BpfObject(path, optional=optional, mountinfo=mountinfo)
        try:
            self.ring = self._obj.ring_buffer("events")
        except BaseException:
            self._obj.close()
            raise

    @property
    def programs(self) -> list[str]:
        return self._obj.programs

    @property
    def unattached(self) -> dict[str, str]:
        """Optional programs that did not load or attach, and why."""
        return self._obj.unattached

    def dropped(self) -> int:
        """Records the kernel could not put in the ring buffer (it was full) since loading."""
        return self._obj.read_u64("dropped")

    def close(self) -> None:
        self.ring.close()
        self._obj.close()
