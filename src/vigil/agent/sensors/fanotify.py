"""fanotify through ctypes: filesystem marks reporting directory handle + name, parsed into FsEvent values."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from vigil.agent.errors import SensorUnavailable

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_CLASS_CONTENT = 0x4
FAN_UNLIMITED_QUEUE = 0x10
FAN_REPORT_FID = 0x200
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME

FAN_MARK_ADD = 0x1
FAN_MARK_REMOVE = 0x2
FAN_MARK_MOUNT = 0x10
FAN_MARK_FILESYSTEM = 0x100

FAN_MODIFY = 0x2
FAN_CLOSE_WRITE = 0x8
FAN_MOVED_FROM = 0x40
FAN_MOVED_TO = 0x80
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_Q_OVERFLOW = 0x4000
FAN_OPEN_EXEC_PERM = 0x00040000
FAN_RENAME = 0x10000000
FAN_ONDIR = 0x40000000

FAN_ALLOW = 0x1  # a permission event's verdicts
FAN_DENY = 0x2

FAN_EVENT_INFO_TYPE_FID = 1
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
FAN_EVENT_INFO_TYPE_DFID = 3
FAN_EVENT_INFO_TYPE_OLD_DFID_NAME = 10
FAN_EVENT_INFO_TYPE_NEW_DFID_NAME = 12

# What the file sensor asks for: entry changes (with directories, so renamed dirs flush the cache)
# and content changes of files.
FILE_MASK = FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ONDIR

METADATA = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
_INFO_HEADER = struct.Struct("=BBH")
_HANDLE_HEAD = struct.Struct("=Ii")
_O_PATH = 0o10000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_init.restype = ctypes.c_int
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
_libc.fanotify_mark.restype = ctypes.c_int
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_libc.open_by_handle_at.restype = ctypes.c_int


@dataclass(frozen=True)
class FsEvent:
    """One fanotify event: its mask, the acting process and the resolved path(s)."""

    mask: int
    pid: int
    path: str | None  # directory + name; None when the directory handle no longer resolves
    old_path: str | None = None  # for FAN_RENAME: where the entry was before

    @property
    def is_dir(self) -> bool:
        return bool(self.mask & FAN_ONDIR)


def _os_error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def fanotify_init(flags: int = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME) -> int:
    fd = _libc.fanotify_init(flags, os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC)
    if fd < 0:
        raise _os_error("fanotify_init")
    return int(fd)


def mark(fd: int, flags: int, mask: int, path: str) -> None:
    if _libc.fanotify_mark(fd, flags, mask, -100, os.fsencode(path)) < 0:  # -100: AT_FDCWD
        raise _os_error(f"fanotify_mark({path})")


def mark_filesystem(fd: int, path: str, mask: int = FILE_MASK, remove: bool = False) -> None:
    mark(fd, (FAN_MARK_REMOVE if remove else FAN_MARK_ADD) | FAN_MARK_FILESYSTEM, mask, path)


def fsid_of(path: str) -> bytes:
    """The 8-byte fsid fanotify reports, from statvfs (glibc folds val[0], val[1] into one word)."""
    return struct.pack("=Q", os.statvfs(path).f_fsid & 0xFFFFFFFFFFFFFFFF)


def probe() -> str | None:
    """None when filesystem marks with directory handles work here, else the reason they do not."""
    try:
        fd = fanotify_init()
    except OSError as e:
        return f"fanotify_init with FAN_REPORT_DFID_NAME refused: {e.strerror}"
    try:
        mark_filesystem(fd, "/")
    except OSError as e:
        return f"FAN_MARK_FILESYSTEM on / refused: {e.strerror}"
    finally:
        os.close(fd)
    return None


class HandleResolver:
    """Directory handle → path via open_by_handle_at, cached; a directory rename clears the cache."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._mounts: dict[bytes, int] = {}
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._max = max_entries
        self.stale = 0

    def add_filesystem(self, path: str) -> None:
        fsid = fsid_of(path)
        if fsid not in self._mounts:
            self._mounts[fsid] = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        for fd in self._mounts.values():
            os.close(fd)
        self._mounts.clear()

    def invalidate(self) -> None:
        self._cache.clear()

    def directory(self, fsid: bytes, handle: bytes) -> str | None:
        key = fsid + handle
        found = self._cache.get(key)
        if found is not None:
            return found
        mount_fd = self._mounts.get(fsid)
        if mount_fd is None:
            mount_fd = next(iter(self._mounts.values()), -1)
        fd = _libc.open_by_handle_at(mount_fd, handle, _O_PATH | os.O_CLOEXEC)
        if fd < 0:
            # ESTALE: the directory is gone already; the event is still reported, without a path.
            if ctypes.get_errno() in (errno.ESTALE, errno.ENOENT):
                self.stale += 1
                return None
            raise _os_error("open_by_handle_at")
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        self._cache[key] = path
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return path


def _dfid_name(buf: bytes, offset: int, end: int, with_name: bool) -> tuple[bytes, bytes, str]:
    fsid = buf[offset + 4 : offset + 12]
    handle_bytes, _type = _HANDLE_HEAD.unpack_from(buf, offset + 12)
    handle_end = offset + 12 + _HANDLE_HEAD.size + handle_bytes
    handle = buf[offset + 12 : handle_end]
    name = ""
    if with_name:
        raw = buf[handle_end:end]
        name = os.fsdecode(raw[: raw.find(b"\0")] if b"\0" in raw else raw)
    return fsid, handle, name


def _join(directory: str | None, name: str) -> str | None:
    if directory is None:
        return None
    if not name or name == ".":
        return directory
    return directory.rstrip("/") + "/" + name


def parse_events(buf: bytes, resolver: HandleResolver, ignore_pid: int = -1) -> Iterator[FsEvent]:
    """Parse what one read() returned; a queue overflow comes out as an event with FAN_Q_OVERFLOW.
    Events of ``ignore_pid`` (the agent's own writes to its spool) are skipped before their
    directory handles are resolved."""
    offset = 0
    while offset + METADATA.size <= len(buf):
        event_len, _vers, _res, meta_len, mask, fd, pid = METADATA.unpack_from(buf, offset)
        if event_len < METADATA.size:
            break
        end = offset + event_len
        if fd >= 0:  # only without FID reporting; closed so it never leaks
            os.close(fd)
        if pid == ignore_pid and not mask & FAN_Q_OVERFLOW:
            offset = end
            continue
        path = old = None
        info = offset + meta_len
        while info + _INFO_HEADER.size <= end:
            itype, _pad, ilen = _INFO_HEADER.unpack_from(buf, info)
            if ilen == 0:
                break
            if itype in (FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
                         FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, FAN_EVENT_INFO_TYPE_DFID):
                fsid, handle, name = _dfid_name(buf, info, info + ilen, itype != FAN_EVENT_INFO_TYPE_DFID)
                full = _join(resolver.directory(fsid, handle), name)
                if itype == FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
                    old = full
                else:
                    path = full
            info += ilen
        yield FsEvent(mask=mask, pid=pid, path=path, old_path=old)
        offset = end


def open_listener(paths: tuple[str, ...], mask: int = FILE_MASK) -> tuple[int, HandleResolver]:
    """An fanotify fd with a filesystem mark on the filesystem of each path, and its resolver."""
    try:
        fd = fanotify_init()
    except OSError as e:
        raise SensorUnavailable(f"fanotify_init refused: {e.strerror}") from e
    resolver = HandleResolver()
    try:
        for path in paths:
            mark_filesystem(fd, path, mask)
            resolver.add_filesystem(path)
    except OSError as e:
        os.close(fd)
        resolver.close()
        raise SensorUnavailable(f"cannot mark the filesystem of {path}: {e.strerror}") from e
    return fd, resolver
