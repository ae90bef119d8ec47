"""The DSA/DLA list parser on a list the test writes: entries, releases, skipped pseudo-versions, located errors."""

from __future__ import annotations

from vigil.tvm.feeds.debian_tracker import parse_list
from vigil.tvm.matching import match_advisory
from vigil.tvm.model import Package

LIST = """[12 Feb 2025] DSA-9001-1 demo - security update
\t{CVE-2099-0001 CVE-2099-0002}
\t[bookworm] - demo 1.2-1+deb12u1
\t[bullseye] - demo <not-affected> (Vulnerable code not present)
[11 Feb 2025] DSA-9000-1 other - security update
        NOTE: a note
 \t[bullseye] - other  2:3.0-1
what is this
"""


def test_entries_releases_and_a_bad_line_with_its_number() -> None:
    advs, errors = parse_list(LIST, "DSA/list")
    assert [a.id for a in advs] == ["DSA-9001-1", "DSA-9000-1"]
    first = advs[0]
    assert first.aliases == ("CVE-2099-0001", "CVE-2099-0002")
    assert [(x.ecosystem, x.name) for x in first.affected] == [("Debian:12", "demo")]  # not-affected adds none
    assert advs[1].affected[0].ecosystem == "Debian:11"
    assert [str(e) for e in errors] == [
        "DSA/list:8: not a header, CVE list or '[release] - package version' line: 'what is this'"
    ]
    hit = match_advisory(Package("Debian:12", "libdemo1", "1.2-1", source_name="demo"), first)
    assert hit is not None and hit.fixed == "1.2-1+deb12u1"
    assert match_advisory(Package("Debian:12", "libdemo1", "1.2-1+deb12u1", source_name="demo"), first) is None
