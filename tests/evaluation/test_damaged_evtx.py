"""Damaged copies of real EVTX files (templates, several chunks): every record outside the damage is recovered."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest
from evtx import PyEvtxParser

from vigil.detect.evtx_recovery import CHUNK_SIZE, FILE_HEADER_SIZE, Recovery

pytestmark = pytest.mark.evaluation

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
SAMPLES = DATA / "evtx" / "EVTX-ATTACK-SAMPLES"

if not SAMPLES.is_dir():
    pytest.skip(f"third-party corpus absent under {DATA} (set VIGIL_SHARED_DATA)", allow_module_level=True)


def _chunks_used(path: Path) -> int:
    with path.open("rb") as fh:
        return int(struct.unpack_from("<H", fh.read(64), 42)[0])


# The first files (by name) whose records fill more than one chunk.
FILES = [p for p in sorted(SAMPLES.rglob("*.evtx")) if _chunks_used(p) > 1][:4]


class Record:
    def __init__(self, rid: int, start: int, end: int, chunk: int, defines_template: bool) -> None:
        self.rid, self.start, self.end, self.chunk, self.defines_template = rid, start, end, chunk, defines_template


def _layout(data: bytes) -> list[Record]:
    out = []
    for k in range(_count(data)):
        base, at = FILE_HEADER_SIZE + k * CHUNK_SIZE, 512
        while data[base + at:base + at + 4] == b"**\0\0":
            size, rid = struct.unpack_from("<IQ", data, base + at + 4)
            # A TemplateInstance (0x0c) right after the fragment header whose definition offset points just past
            # itself holds the definition inline: later records of the chunk read it (and its names) there.
            body = base + at + 24
            inline = data[body + 4] == 0x0C and struct.unpack_from("<I", data, body + 10)[0] == body + 14 - base
            out.append(Record(rid, base + at, base + at + size, k, inline))
            at += size
    return out


def _count(data: bytes) -> int:
    return int(struct.unpack_from("<H", data, 42)[0])


def _parsed(data: bytes) -> dict[int, str]:
    return {r["event_record_id"]: r["data"] for r in PyEvtxParser(io.BytesIO(data)).records_json()}


@pytest.fixture(scope="module", params=FILES, ids=[p.name for p in FILES])
def sample(request: pytest.FixtureRequest) -> tuple[bytes, dict[int, str], list[Record]]:
    data = request.param.read_bytes()
    return data, _parsed(data), _layout(data)


def test_truncation_at_every_4_kib_boundary(sample: tuple[bytes, dict[int, str], list[Record]]) -> None:
    data, reference, layout = sample
    assert len(layout) == len(reference)
    used = FILE_HEADER_SIZE + _count(data) * CHUNK_SIZE
    for cut in range(FILE_HEADER_SIZE, used, 4096):
        recovery = Recovery(data[:cut])
        got = {r["event_record_id"]: r["data"] for r in recovery.records()}
        whole = {r.rid for r in layout if r.end <= cut}
        assert set(got) == whole, cut
        assert all(got[rid] == reference[rid] for rid in got), cut
        assert recovery.damage().first_error.startswith("truncated"), cut


def test_single_byte_corruptions_in_record_bodies(sample: tuple[bytes, dict[int, str], list[Record]]) -> None:
    """A corrupt byte loses or changes its own record and at most the later records of its chunk that read a
    template definition or a name it holds inline (a record without a top-level inline definition still may, in
    the nested BinXML of its values); never a record before it or in another chunk, and always with a warning.
    Most corruptions cost one record: at least three quarters of them here."""
    data, reference, layout = sample
    by_id = {r.rid: r for r in layout}
    tried = alone = with_definitions = 0
    for n, record in enumerate(layout[::max(len(layout) // 40, 1)]):
        pos = record.start + (n * 97) % (record.end - record.start)
        damaged = bytearray(data)
        damaged[pos] ^= 0x5A
        recovery = Recovery(bytes(damaged))
        got = {r["event_record_id"]: r["data"] for r in recovery.records()}
        lost = (set(reference) - set(got)) | {rid for rid in got if got[rid] != reference[rid]}
        assert all(by_id[rid].chunk == record.chunk and rid >= record.rid for rid in lost), (pos, sorted(lost))
        if record.defines_template:
            with_definitions += 1
        else:
            alone += lost <= {record.rid}
            tried += 1
        assert "checksum mismatch" in recovery.damage().first_error
        assert recovery.damage().records_read == len(got)
    assert alone >= 0.75 * tried, (alone, tried, with_definitions)


def test_chunk_header_corruptions_lose_nothing(sample: tuple[bytes, dict[int, str], list[Record]]) -> None:
    data, reference, _ = sample
    for k in range(_count(data)):
        for offset in (0, 9, 30, 46, 50, 130, 300, 500):
            damaged = bytearray(data)
            damaged[FILE_HEADER_SIZE + k * CHUNK_SIZE + offset] ^= 0xFF
            recovery = Recovery(bytes(damaged))
            got = {r["event_record_id"]: r["data"] for r in recovery.records()}
            assert got == reference, (k, offset)
            assert recovery.damage().first_error.startswith(f"chunk {k} at offset")
