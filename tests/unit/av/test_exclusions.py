"""Exclusions: each kind matches what it names and nothing more; levels merge as a union; bad values are named."""

from __future__ import annotations

import pytest

from vigil.av.exclusions import ExclusionError, Exclusions, merge


def test_each_kind_matches_only_what_it_names() -> None:
    ex = Exclusions.of({"path": ["/srv/app/run.sh"], "folder": ["/var/cache/build"], "extension": ["LOG"],
                        "file_name": ["core"], "process": ["/usr/bin/backupd", "rsync"]})
    assert ex.file("/srv/app/run.sh") and not ex.file("/srv/app/run.sh.bak")
    assert ex.file("/var/cache/build/x/y.bin") and not ex.file("/var/cache/buildx/y.bin")
    assert ex.file("/tmp/a.log") and ex.file("/tmp/A.LOG") and not ex.file("/tmp/.log") and not ex.file("/tmp/log")
    assert ex.file("/home/u/core") and not ex.file("/home/u/core.1")
    assert ex.by_process("/usr/bin/backupd") and ex.by_process("/opt/bin/rsync") and not ex.by_process("/bin/sh")
    assert not Exclusions() and ex


def test_levels_merge_as_a_union_and_bad_values_are_named() -> None:
    glob = Exclusions.of({"folder": ["/data/"]})
    group = Exclusions.of({"extension": [".iso"]})
    local = Exclusions.of({"folder": ["/data"], "file_name": ["x"]})
    merged = merge(glob, group, local)
    assert merged.as_lists() == {"path": [], "folder": ["/data/"], "extension": [".iso"], "file_name": ["x"],
                                 "process": []}
    with pytest.raises(ExclusionError, match="folder 'data': must be an absolute path"):
        Exclusions.of({"folder": ["data"]})
    with pytest.raises(ExclusionError, match="unknown exclusion kind 'dir'"):
        Exclusions.of({"dir": ["/x"]})
    with pytest.raises(ExclusionError, match="file_name 'a/b': a base name"):
        Exclusions.of({"file_name": ["a/b"]})
