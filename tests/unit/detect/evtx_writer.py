"""A small EVTX writer for tests: real files (headers, checksums, BinXML records) from Python dicts."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence

FILE_HEADER_SIZE = 4096
CHUNK_SIZE = 65536
CHUNK_HEADER_SIZE = 512
RECORD_OVERHEAD = 28  # magic, size, id, time before the BinXML; the size again after it
_FILETIME_2024 = 133_485_408_000_000_000  # 2024-01-01 in 100 ns steps since 1601


def _text(value: str) -> bytes:
    """A BinXML string value: Value token, type 1 (UTF-16), character count, the characters."""
    raw = value.encode("utf-16-le")
    return b"\x05\x01" + struct.pack("<H", len(raw) // 2) + raw


def _name(name: str, at: int) -> bytes:
    """A name reference written inline: its chunk offset is where it stands (just past the offset field)."""
    raw = name.encode("utf-16-le")
    body = struct.pack("<IHH", 0, 0, len(raw) // 2) + raw + b"\0\0"
    return struct.pack("<I", at + 4) + body


def _element(name: str, content: str | Mapping[str, object] | None, attributes: Mapping[str, str], at: int) -> bytes:
    """One element at chunk offset `at`: OpenStartElement (with attributes), its content, EndElement."""
    out = bytearray(b"\x41" if attributes else b"\x01")  # no dependency id outside template definitions
    size_at = len(out)
    out += b"\0\0\0\0"  # data size, filled in below
    out += _name(name, at + len(out))
    if attributes:
        list_at = len(out)
        out += b"\0\0\0\0"
        start = len(out)
        for i, (key, value) in enumerate(attributes.items()):
            out += b"\x46" if i < len(attributes) - 1 else b"\x06"
            out += _name(key, at + len(out))
            out += _text(value)
        struct.pack_into("<I", out, list_at, len(out) - start)
    if content is None or content == "":
        out += b"\x03"  # CloseEmptyElement
    else:
        out += b"\x02"  # CloseStartElement
        if isinstance(content, str):
            out += _text(content)
        else:
            for child, value in content.items():
                out += _child(child, value, at + len(out))
        out += b"\x04"  # EndElement
    struct.pack_into("<I", out, size_at, len(out) - size_at - 4)
    return bytes(out)


def _child(name: str, value: object, at: int) -> bytes:
    if isinstance(value, tuple):  # (attributes, content)
        attributes, content = value
        return _element(name, content, attributes, at)
    if isinstance(value, Mapping):
        return _element(name, value, {}, at)
    return _element(name, None if value is None else str(value), {}, at)


def binxml(system: Mapping[str, object], event_data: Mapping[str, str], at: int) -> bytes:
    """<Event><System>...</System><EventData><Data Name=k>v</Data>...</EventData></Event> as BinXML."""
    out = bytearray(b"\x0f\x01\x01\x00")  # fragment header
    event_at = at + len(out)
    # Event is written by hand: its children are System (a mapping) and EventData (Data elements, one name)
    ev = bytearray(b"\x01\0\0\0\0")
    ev += _name("Event", event_at + len(ev))
    ev += b"\x02"
    ev += _element("System", system, {}, event_at + len(ev))
    ed = bytearray(b"\x01\0\0\0\0")
    ed_at = event_at + len(ev)
    ed += _name("EventData", ed_at + len(ed))
    ed += b"\x02"
    for key, value in event_data.items():
        ed += _element("Data", value, {"Name": key}, ed_at + len(ed))
    ed += b"\x04"
    struct.pack_into("<I", ed, 1, len(ed) - 5)
    ev += ed
    ev += b"\x04"
    struct.pack_into("<I", ev, 1, len(ev) - 5)
    out += ev
    out += b"\x00"  # end of stream
    return bytes(out)


def record(record_id: int, system: Mapping[str, object], event_data: Mapping[str, str], at: int) -> bytes:
    """One event record at chunk offset `at`, padded to 8 bytes as Windows writes them."""
    body = binxml(system, event_data, at + 24)
    size = RECORD_OVERHEAD + len(body)
    size += -size % 8
    body += bytes(size - RECORD_OVERHEAD - len(body))
    return (b"**\0\0" + struct.pack("<IQQ", size, record_id, _FILETIME_2024 + record_id * 10_000_000)
            + body + struct.pack("<I", size))


def chunk(records: Sequence[tuple[int, bytes]]) -> bytes:
    """A chunk of already placed records ((id, bytes) in order from offset 512), with valid checksums."""
    out = bytearray(CHUNK_SIZE)
    at = CHUNK_HEADER_SIZE
    last_at = at
    for _, raw in records:
        out[at:at + len(raw)] = raw
        last_at, at = at, at + len(raw)
    first_id, last_id = records[0][0], records[-1][0]
    out[:8] = b"ElfChnk\0"
    struct.pack_into("<QQQQIII", out, 8, first_id, last_id, first_id, last_id, 128, last_at, at)
    struct.pack_into("<I", out, 52, zlib.crc32(out[CHUNK_HEADER_SIZE:at]))
    struct.pack_into("<I", out, 124, zlib.crc32(out[:120] + out[128:CHUNK_HEADER_SIZE]))
    return bytes(out)


def evtx_file(events: Iterable[tuple[Mapping[str, object], Mapping[str, str]]]) -> bytes:
    """A whole EVTX file: records numbered from 1, as many per chunk as fit."""
    chunks: list[bytes] = []
    placed: list[tuple[int, bytes]] = []
    at = CHUNK_HEADER_SIZE
    next_id = 1
    for system, data in events:
        raw = record(next_id, system, data, at)
        if at + len(raw) > CHUNK_SIZE:
            chunks.append(chunk(placed))
            placed, at = [], CHUNK_HEADER_SIZE
            raw = record(next_id, system, data, at)
        placed.append((next_id, raw))
        at += len(raw)
        next_id += 1
    if placed:
        chunks.append(chunk(placed))
    header = bytearray(FILE_HEADER_SIZE)
    header[:8] = b"ElfFile\0"
    struct.pack_into("<QQQIHHHH", header, 8, 0, len(chunks) - 1, next_id, 128, 1, 3, FILE_HEADER_SIZE, len(chunks))
    struct.pack_into("<I", header, 124, zlib.crc32(header[:120]))
    return bytes(header) + b"".join(chunks)


def sysmon_events(count: int, *, every: int = 7) -> list[tuple[dict[str, object], dict[str, str]]]:
    """Sysmon process creations; every `every`-th one runs whoami (for a rule to find)."""
    out: list[tuple[dict[str, object], dict[str, str]]] = []
    for n in range(1, count + 1):
        system: dict[str, object] = {
            "Provider": ({"Name": "Microsoft-Windows-Sysmon"}, None),
            "EventID": "1",
            "TimeCreated": ({"SystemTime": f"2024-01-01T00:{n // 60 % 60:02}:{n % 60:02}.000000Z"}, None),
            "EventRecordID": str(n),
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Computer": "ws1.example",
        }
        echo = f"C:\\Windows\\System32\\cmd.exe /c echo {n} " + "x" * (n % 50)
        command = f"whoami /priv {n}" if n % every == 0 else echo
        data = {"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": command, "ProcessId": str(1000 + n),
                "User": "EXAMPLE\\analyst"}
        out.append((system, data))
    return out
