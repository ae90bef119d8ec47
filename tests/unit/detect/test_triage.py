"""Triage scheduling: size-balanced batches hold every file once."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

from vigil.detect.ruleset import RuleSet
from vigil.detect.triage import batches


def test_batches_balance_bytes_and_keep_every_file(tmp_path: Path) -> None:
    files = []
    for i, size in enumerate([900, 500, 400, 300, 200, 100, 100, 50, 10]):
        f = tmp_path / f"f{i}.evtx"
        f.write_bytes(b"x" * size)
        files.append(f)
    out = batches(files, 3)
    assert sorted(p for b in out for p in b) == sorted(files)
    sizes = [sum(p.stat().st_size for p in b) for b in out]
    assert sizes == sorted(sizes, reverse=True)  # the biggest batch first
    assert max(sizes) - min(sizes) <= 900 - 200  # greedy: within the largest file of the others
    assert batches(files[:2], 4) == [[files[0]], [files[1]]]  # no empty batch


def test_workers_return_what_one_process_finds(tmp_path: Path) -> None:
    """Workers send detections packed (rule index, not the rule's texts); unpacked they equal the in-process
    result, evidence and correlation context included."""
    import orjson

    from tests.unit.detect.support import ruleset_for, sysmon
    from vigil.detect.triage import triage

    ruleset = ruleset_for("""
        selection:
            CommandLine|contains: 'whoami'
        condition: selection
    """)
    files = []
    for n in range(6):
        f = tmp_path / f"host{n}.jsonl"
        rows = [sysmon(CommandLine=f"cmd /c whoami /{n}", Computer=f"h{n}", TimeCreated_SystemTime=f"2024-01-0{n + 1}"),
                sysmon(CommandLine="notepad.exe")]
        f.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
        files.append(f)
    one = triage(ruleset, files, workers=1)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    two = triage(ruleset, files, workers=2)
    assert two == one
    # the collector was held off and the results frozen for the run: afterwards it is on, nothing frozen
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert [len(r.detections) for r in two] == [1] * 6 and sum(r.events for r in two) == 12
    assert two[3].detections[0].fields == (("CommandLine", "cmd /c whoami /3"),)
    assert two[3].detections[0].hit.title == "Test rule" and two[3].detections[0].host == "h3"


def _record(command: str, event_id: int = 1) -> dict[str, object]:
    import orjson

    event = {"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": event_id,
                                  "Computer": "ws1"},
                       "EventData": {"CommandLine": command, "Image": "C:\\Windows\\System32\\cmd.exe"}}}
    return {"event_record_id": 1, "timestamp": "", "data": orjson.dumps(event).decode()}


def _whoami_rules() -> RuleSet:
    from tests.unit.detect.support import ruleset_for

    return ruleset_for("selection:\n  CommandLine|contains: 'whoami'\ncondition: selection")


def test_scanning_records_keeps_what_matched_and_the_flat_events() -> None:
    import orjson

    records = [_record("whoami /all"), _record("dir"), _record("WHOAMI"), _record("whoami", event_id=99)]
    events, found, error = _whoami_rules().scan_evtx(iter(records), orjson.loads)
    assert (events, error) == (4, None)
    assert [(h[0].matched_fields, flat["CommandLine"]) for h, flat in found] == [
        (("CommandLine",), "whoami /all"), (("CommandLine",), "WHOAMI")]  # event 99 is no process creation


def test_a_read_or_decode_error_stops_the_scan_and_keeps_what_came_before() -> None:
    """pyevtx raises RuntimeError on a corrupt chunk; a record that is no JSON fails to decode: either ends
    the file's scan with the error, and the records before it count."""
    import orjson

    def corrupt_after_two() -> Iterator[dict[str, object]]:
        yield _record("whoami")
        yield _record("dir")
        raise RuntimeError("chunk 3: bad magic")

    events, found, error = _whoami_rules().scan_evtx(corrupt_after_two(), orjson.loads)
    assert events == 2 and len(found) == 1
    assert isinstance(error, RuntimeError) and "bad magic" in str(error)
    not_json = {"event_record_id": 3, "timestamp": "", "data": "{not json"}
    events, found, error = _whoami_rules().scan_evtx(iter([_record("whoami"), not_json, _record("whoami")]),
                                                     orjson.loads)
    assert events == 1 and len(found) == 1 and isinstance(error, ValueError)


def test_an_error_while_matching_is_not_taken_for_a_bad_file() -> None:
    """Only reading and decoding errors end a file's scan as bad input; anything else is a bug and is raised."""
    import orjson
    import pytest

    rules = _whoami_rules()

    def broken(record: object) -> object:
        raise ZeroDivisionError("a bug in the general path")

    rules._match_evtx_general = broken  # type: ignore[method-assign,assignment]
    unusual = {"event_record_id": 1, "timestamp": "",
               "data": '{"Event": {"System": {"Channel": "x"}, "UserData": {"A": {"B": 1}}}}'}
    with pytest.raises(ZeroDivisionError):
        rules.scan_evtx(iter([_record("dir"), unusual]), orjson.loads)
    with pytest.raises(KeyError):  # a record without its data: a bug in the reader, not bad input
        rules.scan_evtx(iter([{"event_record_id": 1}]), orjson.loads)


def test_records_of_alternating_sources_each_meet_their_own_rules() -> None:
    """The C matcher keeps the last record's route (a file repeats its sources): a record of another source
    must still be matched against that source's rules only."""
    import orjson

    from tests.unit.detect.support import rule_yaml
    from vigil.detect import load_rules_text

    text = rule_yaml("selection:\n  CommandLine|contains: 'whoami'\ncondition: selection", title="sysmon") \
        + "---\n" + rule_yaml("selection:\n  EventID: 4688\n  CommandLine|contains: 'whoami'\n"
                              "condition: selection", logsource="product: windows\nservice: security",
                              title="security")
    rules = load_rules_text(text).ruleset

    def record(channel: str, event_id: int, command: str) -> dict[str, object]:
        event = {"Event": {"System": {"Channel": channel, "EventID": event_id},
                           "EventData": {"CommandLine": command}}}
        return {"data": orjson.dumps(event).decode()}

    sysmon, security = "Microsoft-Windows-Sysmon/Operational", "Security"
    records = [record(sysmon, 1, "whoami"), record(security, 4688, "whoami"), record(security, 4688, "dir"),
               record(sysmon, 1, "whoami"), record(sysmon, 3, "whoami"), record(security, 4688, "whoami"),
               record("SECURITY", 4688, "WHOAMI"), record(sysmon, 1, "dir")] * 2
    events, found, error = rules.scan_evtx(iter(records), orjson.loads)
    assert (events, error) == (16, None)
    both = ["security", "sysmon"]  # a process-creation rule sees Security 4688 too
    assert [(sorted(h.title for h in hits), flat["EventID"]) for hits, flat in found] == [
        (["sysmon"], "1"), (both, "4688"), (["sysmon"], "1"), (both, "4688"), (both, "4688")] * 2
