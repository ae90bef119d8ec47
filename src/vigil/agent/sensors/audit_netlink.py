"""Linux audit over netlink in pure Python: status, the agent's keyed execve rule, the multicast feed."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import platform
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


def rule_key_for(pid: int) -> str:
    """Each agent process uses its own key so two agents never remove each other's rule."""
    return f"{KEY_PREFIX}{pid}"


def build_exec_rule(key: str, machine: str | None = None) -> bytes:
    """struct audit_rule_data for ``-a exit,always -F arch=b64 -S execve -S execveat -k KEY``."""
    arch, syscalls = _ARCH_SYSCALLS.get(machine or platform.machine(), (0, ()))
    if not syscalls:
        raise SensorUnavailable(f"no execve syscall numbers known for architecture {machine!r}")
    mask = [0] * AUDIT_BITMASK_SIZE
    for nr in syscalls:
        mask[nr // 32] |= 1 << (nr % 32)
    fields = [0] * AUDIT_MAX_FIELDS
    values = [0] * AUDIT_MAX_FIELDS
    flags = [0] * AUDIT_MAX_FIELDS
    key_bytes = key.encode()
    fields[0], values[0], flags[0] = AUDIT_ARCH, arch, AUDIT_EQUAL
    fields[1], values[1], flags[1] = AUDIT_FILTERKEY, len(key_bytes), AUDIT_EQUAL
    return (
        _RULE_HEAD.pack(AUDIT_FILTER_EXIT, AUDIT_ALWAYS, 2, *mask)
        + _RULE_ARRAY.pack(*fields)
        + _RULE_ARRAY.pack(*values)
        + _RULE_ARRAY.pack(*flags)
        + struct.pack("=I", len(key_bytes))
        + key_bytes
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


class ExecRuleSession:
    """Installs this agent's execve rule and enables audit; ``close`` puts back what it changed."""

    def __init__(
        self, key: str | None = None, backlog_limit: int = 8192, state_file: Path = ORIGINAL_STATE_FILE
    ) -> None:
        self.key = key or rule_key_for(os.getpid())
        self._backlog_limit = backlog_limit
        self._rule = build_exec_rule(self.key)
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
            try:
                ctl.add_rule(self._rule)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise SensorUnavailable(f"cannot add the audit execve rule: {e}") from e
            self._installed = True
            if needs_enable:
                ctl.set_status(enabled=1)
            if needs_backlog:
                ctl.set_status(backlog_limit=self._backlog_limit)
        log.info("audit execve rule installed with key %s", self.key)

    def close(self) -> None:
        if not self._installed:
            return
        with AuditControl() as ctl:
            try:
                ctl.delete_rule(self._rule)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
            self._installed = False
            # The last one out (no rules of anyone left) restores the settings from before Vigil.
            if not ctl.list_rules() and self._state_file.exists():
                try:
                    original = json.loads(self._state_file.read_text())
                    ctl.set_status(enabled=int(original["enabled"]), backlog_limit=int(original["backlog_limit"]))
                except (ValueError, KeyError, TypeError) as e:
                    log.error("cannot restore audit settings from %s: %s", self._state_file, e)
                self._state_file.unlink(missing_ok=True)
        log.info("audit execve rule %s removed", self.key)


def remove_stale_rules(ctl: AuditControl) -> list[str]:
    """Delete rules left by agents that died without cleaning up (their pid no longer runs)."""
    removed = []
    for rule in ctl.list_rules():
        if not rule.key or not rule.key.startswith(KEY_PREFIX):
            continue
        pid_text = rule.key[len(KEY_PREFIX) :]
        if pid_text.isdigit() and not os.path.exists(f"/proc/{pid_text}"):
            with contextlib.suppress(FileNotFoundError):
                ctl.delete_rule(rule.raw)
            removed.append(rule.key)
            log.info("removed stale audit rule %s", rule.key)
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
