"""Linux audit over netlink in pure Python: status, the agent's keyed execve rule, the multicast feed."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import platform
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from vigil.agent.errors import SensorUnavailable

log = logging.getLogger(__name__)

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4

AUDIT_GET = 1000
AUDIT_SET = 1001
AUDIT_ADD_RULE = 1011
AUDIT_DEL_RULE = 1012
AUDIT_LIST_RULES = 1013

AUDIT_STATUS_ENABLED = 0x1
AUDIT_STATUS_BACKLOG_LIMIT = 0x10

AUDIT_FILTER_EXIT = 0x04
AUDIT_ALWAYS = 2
AUDIT_ARCH = 11
AUDIT_FILTERKEY = 210
AUDIT_EQUAL = 0x40000000
AUDIT_BITMASK_SIZE = 64
AUDIT_MAX_FIELDS = 64

# Only 64-bit execve/execveat for now; a 32-bit rule would need its own arch and numbers.
_ARCH_SYSCALLS = {
    "x86_64": (0xC000003E, (59, 322)),
    "aarch64": (0xC00000B7, (221, 281)),
}

KEY_PREFIX = "vigil_exec."
_AGENT_KEY = re.compile(r"^vigil_[a-z]+\.(\d+)$")  # vigil_<purpose>.<agent pid>
_NLMSGHDR = struct.Struct("=IHHII")
_STATUS = struct.Struct("=10I")  # the fields up to backlog_wait_time; older kernels stop there
_RULE_HEAD = struct.Struct(f"=3I{AUDIT_BITMASK_SIZE}I")
_RULE_ARRAY = struct.Struct(f"={AUDIT_MAX_FIELDS}I")
_RULE_FIXED = _RULE_HEAD.size + 3 * _RULE_ARRAY.size + 4


@dataclass(frozen=True)
class AuditStatus:
    enabled: int
    pid: int
    backlog_limit: int
    lost: int
    backlog: int


@dataclass(frozen=True)
class AuditRule:
    """One kernel rule as listed; ``raw`` is what AUDIT_DEL_RULE needs to remove exactly it."""

    key: str | None
    raw: bytes


def rule_key_for(pid: int, purpose: str = "exec") -> str:
    """Each agent process uses its own key so two agents never remove each other's rule."""
    return f"vigil_{purpose}.{pid}"


AUDIT_FILTER_USER = 0x00
AUDIT_PID = 0
AUDIT_MSGTYPE = 12
AUDIT_SUCCESS = 104
AUDIT_SADDR_FAM = 113
AUDIT_NOT_EQUAL = 0x30000000
AUDIT_GREATER_THAN_OR_EQUAL = 0x60000000
AUDIT_LESS_THAN_OR_EQUAL = 0x50000000

# Syscall numbers for the network rules, by machine: (connect,), (accept, accept4).
_NET_SYSCALLS = {"x86_64": ((42,), (43, 288)), "aarch64": ((203,), (202, 242))}

RuleField = tuple[int, int, int]  # (field, operator, value)


def build_rule(
    key: str, syscalls: tuple[int, ...], fields: tuple[RuleField, ...] = (),
    listnr: int = AUDIT_FILTER_EXIT, arch: int | None = None,
) -> bytes:
    """struct audit_rule_data: ``-a <list>,always [-F arch=..] [-S ..] -F <fields> -k KEY``."""
    mask = [0] * AUDIT_BITMASK_SIZE
    if listnr == AUDIT_FILTER_EXIT:
        for nr in syscalls:
            mask[nr // 32] |= 1 << (nr % 32)
    else:
        mask = [0xFFFFFFFF] * AUDIT_BITMASK_SIZE  # user-list rules ignore syscalls; auditctl sets all
    all_fields: list[RuleField] = []
    if arch is not None:
        all_fields.append((AUDIT_ARCH, AUDIT_EQUAL, arch))
    all_fields += fields
    key_bytes = key.encode()
    all_fields.append((AUDIT_FILTERKEY, AUDIT_EQUAL, len(key_bytes)))
    names = [0] * AUDIT_MAX_FIELDS
    values = [0] * AUDIT_MAX_FIELDS
    flags = [0] * AUDIT_MAX_FIELDS
    for i, (name, op, value) in enumerate(all_fields):
        names[i], flags[i], values[i] = name, op, value & 0xFFFFFFFF
    return (
        _RULE_HEAD.pack(listnr, AUDIT_ALWAYS, len(all_fields), *mask)
        + _RULE_ARRAY.pack(*names)
        + _RULE_ARRAY.pack(*values)
        + _RULE_ARRAY.pack(*flags)
        + struct.pack("=I", len(key_bytes))
        + key_bytes
    )


def _arch(machine: str | None) -> tuple[int, tuple[int, ...]]:
    arch, syscalls = _ARCH_SYSCALLS.get(machine or platform.machine(), (0, ()))
    if not syscalls:
        raise SensorUnavailable(f"no syscall numbers known for architecture {machine or platform.machine()!r}")
    return arch, syscalls


def build_exec_rule(key: str, machine: str | None = None) -> bytes:
    """``-a exit,always -F arch=b64 -S execve -S execveat -k KEY``."""
    arch, syscalls = _arch(machine)
    return build_rule(key, syscalls, arch=arch)


def build_network_rules(key: str, own_pid: int, machine: str | None = None) -> list[bytes]:
    """connect (any result) and successful accept/accept4 on IPv4 and IPv6 sockets, except the
    agent's own: ``-S connect -F saddr_fam=2|10 -F pid!=OWN`` and ``-S accept,accept4 -F success=1``."""
    arch, _ = _arch(machine)
    connect, accept = _NET_SYSCALLS[machine or platform.machine()]
    not_me = (AUDIT_PID, AUDIT_NOT_EQUAL, own_pid)
    rules = []
    for family in (2, 10):  # AF_INET, AF_INET6; unix sockets would flood the feed
        fam = (AUDIT_SADDR_FAM, AUDIT_EQUAL, family)
        rules.append(build_rule(key, connect, (fam, not_me), arch=arch))
        rules.append(build_rule(key, accept, (fam, not_me, (AUDIT_SUCCESS, AUDIT_EQUAL, 1)), arch=arch))
    return rules


def build_user_message_rule(key: str, first: int = 1100, last: int = 1199) -> bytes:
    """``-a user,always -F msgtype>=1100 -F msgtype<=1199 -k KEY``: logs what is logged anyway
    (PAM's USER_* records), but holds this agent's place in the audit configuration."""
    return build_rule(
        key, (), ((AUDIT_MSGTYPE, AUDIT_GREATER_THAN_OR_EQUAL, first), (AUDIT_MSGTYPE, AUDIT_LESS_THAN_OR_EQUAL, last)),
        listnr=AUDIT_FILTER_USER,
    )


def parse_rule(raw: bytes) -> AuditRule:
    """Pull the filter key out of a listed rule (string fields are laid end to end in ``buf``)."""
    field_count = struct.unpack_from("=I", raw, 8)[0]
    base = _RULE_HEAD.size
    fields = _RULE_ARRAY.unpack_from(raw, base)
    values = _RULE_ARRAY.unpack_from(raw, base + _RULE_ARRAY.size)
    buflen = struct.unpack_from("=I", raw, base + 3 * _RULE_ARRAY.size)[0]
    buf = raw[_RULE_FIXED : _RULE_FIXED + buflen]
    offset = 0
    key: str | None = None
    for i in range(min(field_count, AUDIT_MAX_FIELDS)):
        # Fields whose value is a string length: watch/dir/filterkey/obj types/exe; only the key matters.
        if fields[i] in (AUDIT_FILTERKEY, 105, 107, 112, 13, 14, 15, 16, 17, 18, 19, 20):
            text = buf[offset : offset + values[i]]
            offset += values[i]
            if fields[i] == AUDIT_FILTERKEY:
                key = text.decode(errors="replace")
    return AuditRule(key=key, raw=raw[: _RULE_FIXED + buflen])


class AuditControl:
    """A unicast audit socket for configuration requests; one request at a time."""

    def __init__(self) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
            self._sock.bind((0, 0))
        except OSError as e:
            raise SensorUnavailable(f"audit netlink socket refused: {e}") from e
        self._sock.settimeout(2.0)
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> AuditControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, msg_type: int, payload: bytes, flags: int = NLM_F_REQUEST | NLM_F_ACK) -> int:
        self._seq += 1
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type, flags, self._seq, 0) + payload)
        return self._seq

    def _replies(self, seq: int, data: bool, multi: bool) -> list[tuple[int, bytes]]:
        """Collect replies to ``seq`` until its ack/error or DONE; raise on a netlink error."""
        out: list[tuple[int, bytes]] = []
        while True:
            chunk = self._sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(chunk):
                length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(chunk, offset)
                body = chunk[offset + _NLMSGHDR.size : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = struct.unpack_from("=i", body)[0]
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    if out or not data:
                        return out
                    continue  # the ack came before the data (AUDIT_GET answers ack first)
                if mtype == NLMSG_DONE:
                    return out
                out.append((mtype, body))
                if not multi:
                    return out

    def _request(self, msg_type: int, payload: bytes, data: bool, multi: bool) -> list[tuple[int, bytes]]:
        return self._replies(self._send(msg_type, payload), data, multi)

    def status(self) -> AuditStatus:
        (_t, body), *_ = self._request(AUDIT_GET, b"", data=True, multi=False)
        body = body.ljust(_STATUS.size, b"\0")
        _mask, enabled, _failure, pid, _rate, backlog_limit, lost, backlog, _v, _w = _STATUS.unpack_from(body)
        return AuditStatus(enabled=enabled, pid=pid, backlog_limit=backlog_limit, lost=lost, backlog=backlog)

    def set_status(self, *, enabled: int | None = None, backlog_limit: int | None = None) -> None:
        mask = (AUDIT_STATUS_ENABLED if enabled is not None else 0) | (
            AUDIT_STATUS_BACKLOG_LIMIT if backlog_limit is not None else 0
        )
        payload = _STATUS.pack(mask, enabled or 0, 0, 0, 0, backlog_limit or 0, 0, 0, 0, 0)
        self._request(AUDIT_SET, payload, data=False, multi=False)

    def list_rules(self) -> list[AuditRule]:
        return [parse_rule(b) for t, b in self._request(AUDIT_LIST_RULES, b"", data=True, multi=True)
                if t == AUDIT_LIST_RULES]

    def add_rule(self, raw: bytes) -> None:
        self._request(AUDIT_ADD_RULE, raw, data=False, multi=False)

    def delete_rule(self, raw: bytes) -> None:
        self._request(AUDIT_DEL_RULE, raw, data=False, multi=False)


# The audit settings from before any Vigil agent changed them. Several agents (tests, `vigil up`)
# may overlap, so the first one records the original state here and the last one out restores it.
# /run is emptied at boot, exactly when the kernel's audit state resets too.
ORIGINAL_STATE_FILE = Path("/run/vigil-agent-audit.json")


class AuditRuleSession:
    """Installs rules under this agent's key and enables audit; ``close`` puts back what it changed."""

    def __init__(
        self, key: str, rules: list[bytes], backlog_limit: int = 8192, state_file: Path = ORIGINAL_STATE_FILE
    ) -> None:
        self.key = key
        self._backlog_limit = backlog_limit
        self._rules = rules
        self._state_file = state_file
        self._installed = False

    def open(self) -> None:
        with AuditControl() as ctl:
            try:
                status = ctl.status()
            except OSError as e:
                raise SensorUnavailable(f"cannot read the audit status: {e}") from e
            if status.enabled == 2:
                raise SensorUnavailable("audit configuration is locked (enabled=2); cannot add the exec rule")
            remove_stale_rules(ctl)
            needs_enable = status.enabled != 1
            needs_backlog = status.backlog_limit < self._backlog_limit
            if (needs_enable or needs_backlog) and not self._state_file.exists():
                try:
                    self._state_file.write_text(
                        json.dumps({"enabled": status.enabled, "backlog_limit": status.backlog_limit})
                    )
                except OSError as e:
                    log.warning("cannot record the audit settings in %s (%s); they stay changed after stop",
                                self._state_file, e)
            for rule in self._rules:
                try:
                    ctl.add_rule(rule)
                except OSError as e:
                    if e.errno != errno.EEXIST:
                        self._installed = True
                        self._delete_rules(ctl)
                        raise SensorUnavailable(f"cannot add the audit rule {self.key}: {e}") from e
            self._installed = True
            if needs_enable:
                ctl.set_status(enabled=1)
            if needs_backlog:
                ctl.set_status(backlog_limit=self._backlog_limit)
        log.info("audit rules installed with key %s", self.key)

    def close(self) -> None:
        if not self._installed:
            return
        with AuditControl() as ctl:
            self._delete_rules(ctl)
            self._installed = False
            # The last one out (no rules of anyone left) restores the settings from before Vigil.
            if not ctl.list_rules() and self._state_file.exists():
                try:
                    original = json.loads(self._state_file.read_text())
                    ctl.set_status(enabled=int(original["enabled"]), backlog_limit=int(original["backlog_limit"]))
                except (ValueError, KeyError, TypeError) as e:
                    log.error("cannot restore audit settings from %s: %s", self._state_file, e)
                self._state_file.unlink(missing_ok=True)
        log.info("audit rules %s removed", self.key)

    def _delete_rules(self, ctl: AuditControl) -> None:
        for rule in self._rules:
            try:
                ctl.delete_rule(rule)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise


class ExecRuleSession(AuditRuleSession):
    """This agent's execve rule (``vigil_exec.<pid>``)."""

    def __init__(
        self, key: str | None = None, backlog_limit: int = 8192, state_file: Path = ORIGINAL_STATE_FILE
    ) -> None:
        key = key or rule_key_for(os.getpid())
        super().__init__(key, [build_exec_rule(key)], backlog_limit, state_file)


def remove_stale_rules(ctl: AuditControl) -> list[str]:
    """Delete rules left by agents that died without cleaning up (their pid no longer runs)."""
    removed = []
    for rule in ctl.list_rules():
        m = _AGENT_KEY.match(rule.key or "")
        if m is None:
            continue
        if not os.path.exists(f"/proc/{m.group(1)}"):
            with contextlib.suppress(FileNotFoundError):
                ctl.delete_rule(rule.raw)
            removed.append(m.group(0))
            log.info("removed stale audit rule %s", m.group(0))
    return removed


def open_multicast(rcvbuf: int = 8 << 20) -> socket.socket:
    """Subscribe to the read-only audit log multicast group; coexists with auditd."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    except OSError as e:
        raise SensorUnavailable(f"audit netlink socket refused: {e}") from e
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE
        sock.bind((0, AUDIT_NLGRP_READLOG))
    except OSError as e:
        sock.close()
        raise SensorUnavailable(f"cannot join the audit multicast group (CAP_AUDIT_READ?): {e}") from e
    return sock


def split_messages(data: bytes) -> list[tuple[int, bytes]]:
    """Split a netlink datagram into (type, payload) pairs."""
    out = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, mtype, _f, _s, _p = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        out.append((mtype, data[offset + _NLMSGHDR.size : offset + length]))
        offset += (length + 3) & ~3
    return out


def drain(sock: socket.socket, limit: int) -> tuple[list[bytes], int]:
    """Up to ``limit`` datagrams from a non-blocking netlink socket, and how many times the kernel
    reported a receive-buffer overflow (ENOBUFS: events lost, at least one each) meanwhile."""
    out: list[bytes] = []
    overflows = 0
    for _ in range(limit):
        try:
            out.append(sock.recv(1 << 16))
        except BlockingIOError:
            break
        except OSError as e:
            if e.errno != errno.ENOBUFS:
                raise
            overflows += 1
    return out, overflows
