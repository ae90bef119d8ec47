"""struct utmp records as glibc writes them to /var/log/wtmp and /var/log/btmp (x86_64 and aarch64 layout)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum

# short ut_type (+2 pad), pid_t ut_pid, char ut_line[32], ut_id[4], ut_user[32], ut_host[256],
# struct exit_status {short, short}, int32 ut_session, struct {int32 tv_sec, tv_usec},
# int32 ut_addr_v6[4] (network byte order), char reserved[20]. 64-bit glibc keeps the time
# fields 32-bit so the file format matches 32-bit programs; both supported ABIs are little-endian.
_UTMP = struct.Struct("<h2xi32s4s32s256shhiii16s20x")
RECORD_SIZE = _UTMP.size  # 384


class UtmpType(IntEnum):
    EMPTY = 0
    RUN_LVL = 1
    BOOT_TIME = 2
    NEW_TIME = 3
    OLD_TIME = 4
    INIT_PROCESS = 5
    LOGIN_PROCESS = 6
    USER_PROCESS = 7
    DEAD_PROCESS = 8
    ACCOUNTING = 9


@dataclass(frozen=True)
class UtmpRecord:
    type: int  # a UtmpType, or an unknown value kept as is
    pid: int
    line: str  # the terminal without /dev/: tty1, pts/3, ssh:notty
    id: str
    user: str
    host: str  # the remote host name or address, or an X display (":0")
    session: int
    timestamp: float
    address: str | None  # ut_addr_v6 as text; None when all zero


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _address(raw: bytes) -> str | None:
    if not any(raw):
        return None
    if not any(raw[4:]):  # glibc stores an IPv4 address in the first word and zeroes the rest
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw))


def parse_record(raw: bytes) -> UtmpRecord:
    """One 384-byte record; raises ValueError naming the size when ``raw`` is not one."""
    if len(raw) != RECORD_SIZE:
        raise ValueError(f"a utmp record is {RECORD_SIZE} bytes, got {len(raw)}")
    ut_type, pid, line, ut_id, user, host, _term, _exit, session, sec, usec, addr = _UTMP.unpack(raw)
    return UtmpRecord(
        type=ut_type, pid=pid, line=_text(line), id=_text(ut_id), user=_text(user), host=_text(host),
        # tv_sec read unsigned: a 32-bit field past 2038 still counts forward.
        session=session, timestamp=(sec & 0xFFFFFFFF) + usec / 1e6, address=_address(addr),
    )


def parse_records(data: bytes) -> tuple[list[UtmpRecord], bytes]:
    """The whole records in ``data`` and the bytes of an incomplete last one (a write still in progress)."""
    whole = len(data) - len(data) % RECORD_SIZE
    records = [parse_record(data[i:i + RECORD_SIZE]) for i in range(0, whole, RECORD_SIZE)]
    return records, data[whole:]

