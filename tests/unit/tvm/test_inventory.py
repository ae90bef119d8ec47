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
