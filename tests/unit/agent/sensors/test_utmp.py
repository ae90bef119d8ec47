"""utmp records (wtmp/btmp) packed here at glibc's x86_64 offsets, independently of the parser's format string."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess

import pytest

from vigil.agent.sensors.logon_records import from_utmp, logon_type
from vigil.agent.sensors.utmp import RECORD_SIZE, UtmpType, parse_record, parse_records

USER_PROCESS, LOGIN_PROCESS, DEAD_PROCESS, BOOT_TIME = 7, 6, 8, 2


def utmp(ut_type: int = USER_PROCESS, pid: int = 4242, line: str = "pts/3", user: str = "alice", host: str = "",
         addr: str | None = None, sec: int = 1_700_000_000, usec: int = 250_000, ut_id: str = "ts/3") -> bytes:
    """One struct utmp as glibc lays it out on x86_64 (see utmp(5) and bits/utmp.h)."""
    raw = bytearray(384)
    struct.pack_into("<h", raw, 0, ut_type)
    struct.pack_into("<i", raw, 4, pid)
    raw[8:8 + len(line)] = line.encode()
    raw[40:40 + len(ut_id)] = ut_id.encode()
    raw[44:44 + len(user)] = user.encode()
    raw[76:76 + len(host)] = host.encode()
    struct.pack_into("<i", raw, 336, 77)  # ut_session
    struct.pack_into("<iI", raw, 340, sec if sec < 2**31 else sec - 2**32, usec)
    if addr is not None:
        packed = ipaddress.ip_address(addr).packed
        raw[348:348 + len(packed)] = packed
    return bytes(raw)


def test_record_size_and_fields() -> None:
    assert RECORD_SIZE == 384
    r = parse_record(utmp(host="gw.example.net", addr="198.51.100.7"))
    assert (r.type, r.pid, r.line, r.id, r.user, r.host, r.session) == \
        (UtmpType.USER_PROCESS, 4242, "pts/3", "ts/3", "alice", "gw.example.net", 77)
    assert r.timestamp == 1_700_000_000.25 and r.address == "198.51.100.7"


def test_ipv6_address_and_zero_address() -> None:
    assert parse_record(utmp(addr="2001:db8::42:1")).address == "2001:db8::42:1"
    assert parse_record(utmp(addr=None)).address is None


def test_full_width_fields_have_no_terminator() -> None:
    r = parse_record(utmp(user="u" * 32, line="l" * 32, host="h" * 256))
    assert (r.user, r.line, r.host) == ("u" * 32, "l" * 32, "h" * 256)


def test_time_after_2038_counts_forward() -> None:
    assert parse_record(utmp(sec=2**31 + 5, usec=0)).timestamp == 2**31 + 5


def test_truncated_last_record_is_kept_back() -> None:
    first, second = utmp(user="one"), utmp(user="two")
    records, rest = parse_records(first + second[:100])
    assert [r.user for r in records] == ["one"] and rest == second[:100]
    records, rest = parse_records(rest + second[100:])
    assert [r.user for r in records] == ["two"] and rest == b""


def test_a_record_of_the_wrong_size_is_refused_with_the_size() -> None:
    with pytest.raises(ValueError, match="384 bytes, got 383"):
        parse_record(b"\0" * 383)


def test_ssh_session_from_wtmp_is_remote_interactive_like_pam_reports_it() -> None:
    logon = from_utmp(parse_record(utmp(host="203.0.113.9", addr="203.0.113.9")), failed=False)
    assert logon is not None and logon.success and logon.account == "alice" and logon.pid == 4242
    assert (logon.service, logon.terminal, logon.source) == ("sshd", "/dev/pts/3", "wtmp")
    assert (logon.remote_ip, logon.remote_host, logon.timestamp) == ("203.0.113.9", None, 1_700_000_000.25)
    assert logon_type(logon.service, logon.terminal) == "RemoteInteractive"


def test_host_name_goes_to_remote_device_and_address_to_remote_ip() -> None:
    logon = from_utmp(parse_record(utmp(host="laptop.example.net", addr="2001:db8::7")), failed=False)
    assert logon is not None and (logon.remote_ip, logon.remote_host) == ("2001:db8::7", "laptop.example.net")


def test_console_and_x_display_logins_are_local_interactive() -> None:
    tty = from_utmp(parse_record(utmp(line="tty1", host="")), failed=False)
    assert tty is not None and (tty.service, tty.terminal, tty.remote_ip) == ("login", "/dev/tty1", None)
    assert logon_type(tty.service, tty.terminal) == "Interactive"
    x = from_utmp(parse_record(utmp(line="pts/0", host=":0")), failed=False)
    assert x is not None and x.remote_ip is None and x.remote_host is None
    assert logon_type(x.service, x.terminal) == "Interactive"


def test_ipv6_loopback_host_is_remote_not_a_display() -> None:
    logon = from_utmp(parse_record(utmp(host="::1")), failed=False)
    assert logon is not None and logon.remote_ip == "::1" and logon.service == "sshd"


def test_btmp_records_are_failed_logons() -> None:
    logon = from_utmp(parse_record(utmp(LOGIN_PROCESS, line="ssh:notty", user="root", host="192.0.2.66",
                                        addr="192.0.2.66")), failed=True)
    assert logon is not None and not logon.success and logon.source == "btmp"
    assert (logon.account, logon.remote_ip, logon.terminal, logon.failure_reason) == \
        ("root", "192.0.2.66", "ssh:notty", "authentication failure")
    assert logon_type(logon.service, logon.terminal) == "RemoteInteractive"


@pytest.mark.parametrize("record", [
    utmp(DEAD_PROCESS), utmp(BOOT_TIME, user="reboot", line="~"), utmp(LOGIN_PROCESS, user="LOGIN"), utmp(user=""),
])
def test_wtmp_records_other_than_a_user_session_are_not_logons(record: bytes) -> None:
    assert from_utmp(parse_record(record), failed=False) is None


@pytest.mark.skipif(shutil.which("utmpdump") is None, reason="util-linux's utmpdump is not installed")
def test_records_written_by_util_linux_utmpdump_parse() -> None:
    """utmpdump -r writes struct utmp through glibc: an outside check of the layout."""
    text = ("[7] [04242] [ts/3] [alice   ] [pts/3       ] [2001:db8::66        ] [2001:db8::66   ]"
            " [2023-11-14T22:13:20,250000+00:00]\n"
            "[6] [00000] [    ] [root    ] [ssh:notty   ] [198.51.100.2        ] [198.51.100.2   ]"
            " [2023-11-14T22:13:21,000000+00:00]\n")
    data = subprocess.run(["utmpdump", "-r"], input=text.encode(), capture_output=True, check=True).stdout
    records, rest = parse_records(data)
    assert rest == b"" and len(records) == 2
    session, failure = records
    assert (session.type, session.pid, session.id, session.user, session.line, session.host, session.address) == \
        (UtmpType.USER_PROCESS, 4242, "ts/3", "alice", "pts/3", "2001:db8::66", "2001:db8::66")
    assert session.timestamp == 1_700_000_000.25
    assert (failure.user, failure.line, failure.address, failure.timestamp) == \
        ("root", "ssh:notty", "198.51.100.2", 1_700_000_001.0)
    assert parse_records(utmp(host="2001:db8::66", addr="2001:db8::66", line="pts/3"))[0][0].address == \
        session.address, "the test's own packing agrees with glibc's"
