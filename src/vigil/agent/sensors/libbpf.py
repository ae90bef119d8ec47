"""libbpf through ctypes: open, load and attach a compiled BPF object, and drain its ring buffer."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
from collections.abc import Callable
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
            "bpf_program__attach": ([p], p),
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


class BpfObject:
    """An opened, loaded and attached BPF object; ``close`` detaches every program."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lib = lib = load_libbpf()
        self._links: list[int] = []
        self.programs: list[str] = []
        if not path.is_file():
            raise BpfError(f"open {path}", errno.ENOENT, "the BPF object is not built; run `make bpf`")
        ctypes.set_errno(0)
        obj = lib.bpf_object__open_file(str(path).encode(), None)
        if not obj:
            raise BpfError(f"open {path}", _errno_of(0))
        self._obj: int | None = int(obj)
        try:
            ret = int(lib.bpf_object__load(self._obj))
            if ret:
                raise BpfError(f"load {path.name}", _errno_of(ret), "the verifier's log is in the agent log")
            prog = lib.bpf_object__next_program(self._obj, None)
            while prog:
                name = ctypes.string_at(lib.bpf_program__name(prog)).decode()
                ctypes.set_errno(0)
                link = lib.bpf_program__attach(prog)
                if not link:
                    raise BpfError(f"attach {name}", _errno_of(0))
                self._links.append(int(link))
                self.programs.append(name)
                prog = lib.bpf_object__next_program(self._obj, prog)
        except BaseException:
            self.close()
            raise

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
        if self._obj is not None:
            self._lib.bpf_object__close(self._obj)
            self._obj = None
