"""Damaged EVTX: truncated files and corrupt bytes give every record outside the damage, and say what was lost."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from evtx import PyEvtxParser

from tests.unit.detect.evtx_writer import CHUNK_SIZE, FILE_HEADER_SIZE, evtx_file, sysmon_events
from tests.unit.detect.support import ruleset_for
from vigil.detect.evtx_recovery import Recovery, check_evtx
from vigil.detect.triage import TriageInputError, read_evtx_records, scan_file, triage

INTACT = evtx_file(sysmon_events(150))


def _records(data: bytes) -> dict[int, str]:
    return {r["event_record_id"]: r["data"] for r in PyEvtxParser(io.BytesIO(data)).records_json()}


def _spans(data: bytes) -> dict[int, tuple[int, int]]:
    """Each record's id -> its (start, end) byte offsets in the file, walked from the chunk headers."""
    out = {}
    for k in range((len(data) - FILE_HEADER_SIZE) // CHUNK_SIZE):
        base, at = FILE_HEADER_SIZE + k * CHUNK_SIZE, 512
        while data[base + at:base + at + 4] == b"**\0\0":
            size, rid = struct.unpack_from("<IQ", data, base + at + 4)
            out[rid] = (base + at, base + at + size)
            at += size
    return out


REFERENCE = _records(INTACT)
SPANS = _spans(INTACT)


def _recovered(data: bytes) -> tuple[dict[int, str], Recovery]:
    recovery = Recovery(data)
    return {r["event_record_id"]: r["data"] for r in recovery.records()}, recovery


def test_the_fixture_is_a_real_evtx_file_of_several_chunks() -> None:
    assert len(REFERENCE) == 150 and len(SPANS) == 150
    assert (len(INTACT) - FILE_HEADER_SIZE) // CHUNK_SIZE == 3


def test_an_intact_file_passes_the_check_and_takes_the_fast_path(tmp_path: Path) -> None:
    path = tmp_path / "intact.evtx"
    path.write_bytes(INTACT)
    assert check_evtx(path) is None
    result = scan_file(ruleset_for("selection:\n  CommandLine|contains: 'whoami'\ncondition: selection"), path)
    assert (result.events, result.error, result.damage) == (150, None, None)
    assert len(result.detections) == 150 // 7


@pytest.mark.parametrize("cut", range(0, len(INTACT), 4096))
def test_truncation_at_every_4_kib_boundary_keeps_every_whole_record(cut: int, tmp_path: Path) -> None:
    data = INTACT[:cut]
    whole = {rid for rid, (_, end) in SPANS.items() if end <= cut}
    got, recovery = _recovered(data)
    assert set(got) == whole
    assert all(got[rid] == REFERENCE[rid] for rid in got)
    damage = recovery.damage()
    assert damage.records_read == len(whole)
    assert "truncated" in damage.first_error or "shorter than" in damage.first_error
    # The records the last chunk's header counts, past the cut, are reported lost; their bytes in the file too.
    last_chunk = (cut - FILE_HEADER_SIZE) // CHUNK_SIZE
    in_last = {rid for rid, (start, _) in SPANS.items() if (start - FILE_HEADER_SIZE) // CHUNK_SIZE == last_chunk}
    if cut > FILE_HEADER_SIZE + last_chunk * CHUNK_SIZE + 512:
        assert damage.records_skipped == len(in_last - whole)
        assert damage.bytes_unreadable == sum(
            cut - start for rid, (start, end) in SPANS.items() if start < cut < end)
    path = tmp_path / "cut.evtx"
    path.write_bytes(data)
    assert check_evtx(path) is not None
    result = scan_file(ruleset_for("selection:\n  CommandLine|contains: 'whoami'\ncondition: selection"), path)
    if whole:  # no silent zero: either records and a damage report, or an error
        assert result.error is None and result.damage is not None and result.events == len(whole)
        assert len(result.detections) == sum(1 for rid in whole if rid % 7 == 0)
    else:
        assert result.error is not None and "no intact record" in result.error


def _positions() -> list[int]:
    """Bytes in every record: its signature, size, id, time, its BinXML at several places, its closing size."""
    out = []
    for start, end in SPANS.values():
        out += [start, start + 4, start + 9, start + 20, start + 24, start + 40, (start + end) // 2, end - 8, end - 3]
    return out


def test_a_corrupt_byte_in_a_record_loses_that_record_at_most() -> None:
    warned = 0
    for pos in _positions():
        data = bytearray(INTACT)
        data[pos] ^= 0x5A
        got, recovery = _recovered(bytes(data))
        damaged = {rid for rid, (start, end) in SPANS.items() if start <= pos < end}
        lost = (set(REFERENCE) - set(got)) | {rid for rid in got if got[rid] != REFERENCE[rid]}
        assert lost <= damaged, (pos, sorted(lost))
        damage = recovery.damage()
        assert damage.records_read == len(got)
        assert damage.records_skipped == len(set(REFERENCE) - set(got)), pos
        warned += "checksum mismatch" in damage.first_error
    assert warned == len(_positions())  # every one of them breaks its chunk's data checksum, and says so


@pytest.mark.parametrize("offset", [0, 7, 8, 24, 40, 44, 48, 60, 200, 400, 511])
def test_a_corrupt_chunk_header_loses_no_record(offset: int, tmp_path: Path) -> None:
    data = bytearray(INTACT)
    data[FILE_HEADER_SIZE + CHUNK_SIZE + offset] ^= 0xFF  # chunk 1's header
    got, recovery = _recovered(bytes(data))
    assert got == REFERENCE
    assert recovery.damage().first_error.startswith("chunk 1 at offset 69632: ")
    path = tmp_path / "header.evtx"
    path.write_bytes(bytes(data))
    result = scan_file(ruleset_for("selection:\n  CommandLine|contains: 'whoami'\ncondition: selection"), path)
    assert result.events == 150 and result.damage is not None and result.damage.records_skipped == 0


def test_a_corrupt_file_header_loses_no_record() -> None:
    data = bytearray(INTACT)
    data[10] ^= 0xFF
    got, recovery = _recovered(bytes(data))
    assert got == REFERENCE and recovery.damage().first_error == "file header: checksum mismatch"


def test_a_damaged_record_id_does_not_hide_the_records_after_it() -> None:
    data = bytearray(INTACT)
    start, _ = SPANS[20]
    struct.pack_into("<Q", data, start + 8, 60)  # as if record 20 said 60: 21..49 must not look out of order
    got, _ = _recovered(bytes(data))
    assert set(REFERENCE) - set(got) == {20}


def test_a_file_of_no_records_is_an_error_not_a_silent_zero(tmp_path: Path) -> None:
    path = tmp_path / "noise.evtx"
    path.write_bytes(bytes(range(256)) * 300)
    result = scan_file(ruleset_for("selection:\n  CommandLine|contains: 'whoami'\ncondition: selection"), path)
    assert result.events == 0 and result.error is not None and "no ElfFile signature" in result.error


def test_read_evtx_records_refuses_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.evtx"
    path.write_bytes(INTACT[:-5000])
    with pytest.raises(TriageInputError, match="damaged EVTX: truncated"):
        list(read_evtx_records(path))


def test_workers_carry_the_damage_report(tmp_path: Path) -> None:
    files = []
    for n, data in enumerate([INTACT, INTACT[:100_000], INTACT]):
        files.append(tmp_path / f"f{n}.evtx")
        files[-1].write_bytes(data)
    ruleset = ruleset_for("selection:\n  CommandLine|contains: 'whoami'\ncondition: selection")
    one, two = triage(ruleset, files, workers=1), triage(ruleset, files, workers=2)
    assert one == two
    assert [r.damage is None for r in two] == [True, False, True]
    assert two[1].damage is not None and two[1].damage.records_read == two[1].events > 0
