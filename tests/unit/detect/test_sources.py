"""Rule-file discovery: the same files in the same order as sorted Path objects, read once."""

from __future__ import annotations

from pathlib import Path

from vigil.detect.sources import RULE_SUFFIXES, discover, read_sources


def test_discovery_order_is_pathlib_order(tmp_path: Path) -> None:
    for name in ("a-b/x.yml", "a/b.yml", "a/B.yaml", "A/z.yml", "a.b/c.yml", "a/sub/deep.yml", "top.yml",
                 "a/notes.txt", "a/dir.yml/inside.yml"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("title: x\n")
    expected = sorted(p for p in tmp_path.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())
    files, errors = discover([tmp_path])
    assert files == expected and not errors


def test_missing_path_is_an_error_and_bytes_are_read(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_bytes(b"title: \xc3\xa9\n" * 10_000)
    sources, errors = read_sources([tmp_path / "r.yml", tmp_path / "absent"])
    assert [s.data for s in sources] == [b"title: \xc3\xa9\n" * 10_000]
    assert [(e.path, e.reason) for e in errors] == [(tmp_path / "absent", "no such file or directory")]
