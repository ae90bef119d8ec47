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
