"""dpkg status and requirements readers on files the test writes."""

from __future__ import annotations

import pytest

from vigil.tvm.feeds import FeedError
from vigil.tvm.inventory import read_dpkg_status, read_requirements

STATUS = """Package: libssl3
Status: install ok installed
Source: openssl (3.0.11-1~deb12u2)
Version: 3.0.11-1~deb12u2+b1
Description: x
 continued: not a field

Package: gone
Status: deinstall ok config-files
Version: 1.0

Package: bash
Status: install ok installed
Version: 5.2.15-2+b2
"""


def test_dpkg_status_source_packages_and_removed_ones() -> None:
    pkgs = read_dpkg_status(STATUS, "status", "12")
    assert [(p.name, p.match_name, p.match_version) for p in pkgs] == [
        ("libssl3", "openssl", "3.0.11-1~deb12u2"),
        ("bash", "bash", "5.2.15-2+b2"),
    ]
    assert pkgs[0].ecosystem == "Debian:12"
    with pytest.raises(FeedError, match="status:1: an installed package's stanza"):
        read_dpkg_status("Package: x\nStatus: install ok installed\n", "status", "12")


def test_requirements_pins_and_an_unpinned_line() -> None:
    got = read_requirements(
        "# c\n-r other.txt\nDjango==4.2.1  # web\nrequests[socks]==2.31.0 ; python_version>'3'\n", "r.txt"
    )
    assert [(p.name, p.version) for p in got] == [("Django", "4.2.1"), ("requests", "2.31.0")]
    with pytest.raises(FeedError, match=r"r.txt:2: not a pinned"):
        read_requirements("a==1\nflask>=2\n", "r.txt")


def test_package_lock_v3_and_v1() -> None:
    import json

    from vigil.tvm.inventory import read_package_lock

    v3 = {"lockfileVersion": 3, "packages": {"": {"version": "1.0.0"},
                                             "node_modules/a": {"version": "1.0.0"},
                                             "node_modules/a/node_modules/@s/b": {"version": "2.0.0"},
                                             "node_modules/linked": {"link": True, "resolved": "../x"}}}
    got = [(p.ecosystem, p.name, p.version) for p in read_package_lock(json.dumps(v3), "package-lock.json")]
    assert got == [("npm", "@s/b", "2.0.0"), ("npm", "a", "1.0.0")]
    v1 = {"lockfileVersion": 1, "dependencies": {"a": {"version": "1.0.0", "dependencies": {"b": {"version": "3"}}}}}
    assert {p.name for p in read_package_lock(json.dumps(v1), "l")} == {"a", "b"}
    with pytest.raises(FeedError, match="l:1: not JSON"):
        read_package_lock("{", "l")
    with pytest.raises(FeedError, match="not an npm package-lock"):
        read_package_lock("[]", "l")


def test_dist_metadata_reads_the_headers_only() -> None:
    from vigil.tvm.inventory import read_dist_metadata

    p = read_dist_metadata("Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 1.0.post1\n\nName: not-this\n", "M")
    assert (p.ecosystem, p.name, p.version) == ("PyPI", "Foo_Bar", "1.0.post1")
    with pytest.raises(FeedError, match="without Name or Version"):
        read_dist_metadata("Metadata-Version: 2.1\n", "M")
