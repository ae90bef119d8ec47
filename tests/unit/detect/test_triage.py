"""Triage scheduling: size-balanced batches hold every file once."""

from __future__ import annotations

from pathlib import Path

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
    two = triage(ruleset, files, workers=2)
    assert two == one
    assert [len(r.detections) for r in two] == [1] * 6 and sum(r.events for r in two) == 12
    assert two[3].detections[0].fields == (("CommandLine", "cmd /c whoami /3"),)
    assert two[3].detections[0].hit.title == "Test rule" and two[3].detections[0].host == "h3"
