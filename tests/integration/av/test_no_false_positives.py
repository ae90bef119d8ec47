"""No false positive over a generated benign corpus and this machine's own /usr/bin (heuristics included)."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

from tests.unit.av.av_support import tar_gz_of, zip_of
from vigil.av.definitions import builtin
from vigil.av.engine import Engine, EngineOptions
from vigil.av.scan import ScanType, run_scan


def _benign_corpus(root: Path) -> int:
    rng = random.Random(20)
    root.mkdir()
    n = 0
    for i in range(40):  # the machine's own programs copied to a temp folder: ELF in /tmp, not packed
        src = Path(shutil.which(["ls", "cp", "tar", "gzip", "python3", "bash", "sed", "grep"][i % 8]) or "/bin/ls")
        shutil.copy(src, root / f"prog{i}")
        n += 1
    # Shared libraries in a temp folder too: sanitizers export readdir and import dlsym, some carry compressed
    # data (both once fooled the heuristics in the benchmark's corpus).
    libs = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("lib*.so*"))
    for lib in [p for p in libs if p.name.startswith(("libasan", "libtsan", "libsamba", "libfakeroot"))] + libs[:150]:
        if lib.is_file() and not lib.is_symlink() and lib.stat().st_size < 8 << 20:
            shutil.copy(lib, root / f"lib{n}-{lib.name}")
            n += 1
    scripts = [
        b"#!/bin/sh\nset -e\ncurl -fsSLO https://example.org/release.tar.gz\ntar xzf release.tar.gz\n./configure\n",
        b"#!/bin/bash\nwget -q https://example.org/data.csv -O /tmp/data.csv\npython3 load.py /tmp/data.csv\n",
        b"#!/bin/sh\n# chmod +x is fine alone\nchmod +x ./build.sh\n./build.sh\n",
        b"#!/bin/sh\necho 'see https://example.org | sh for docs' > README\n",
    ]
    for i, s in enumerate(scripts * 5):
        (root / f"script{i}.sh").write_bytes(s)
        n += 1
    for i in range(30):
        (root / f"data{i}.json").write_text(json.dumps({"id": i, "values": [rng.random() for _ in range(200)],
                                                       "note": "pool of workers at tcp://host:3333"}))
        (root / f"blob{i}.bin").write_bytes(rng.randbytes(rng.randint(1, 300_000)))  # high entropy, not ELF
        (root / f"text{i}.txt").write_text(" ".join(rng.choice(["alpha", "beta", "stratum", "readdir", "dlsym"])
                                                    for _ in range(5000)))
        n += 3
    (root / "docs.zip").write_bytes(zip_of({f"doc{i}.txt": rng.randbytes(5000) for i in range(20)}))
    (root / "src.tar.gz").write_bytes(tar_gz_of({f"src/f{i}.c": b"int main(void) { return 0; }\n" * 50
                                                for i in range(20)}))
    (root / "etc").mkdir()
    (root / "etc" / "ld.so.preload").write_text("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    return n + 3


def test_no_false_positive_on_usr_bin_and_a_generated_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    n = _benign_corpus(corpus)
    engine = Engine(builtin(), EngineOptions(temp_dirs=(str(tmp_path) + "/", "/tmp/", "/var/tmp/", "/dev/shm/")))
    report = run_scan(engine, ScanType.CUSTOM, [str(corpus), "/usr/bin"], workers=os.cpu_count())
    assert report.files >= n + 100, report.files
    assert report.detections == [], [d.as_dict() for d in report.detections]
