"""The matcher on each OSV trap: withdrawn, last_affected, versions lists, introduced-0, multiple ranges, aliases,
and Debian's source-package match against the distro's fixed version."""

from __future__ import annotations

from vigil.tvm.matching import group_weaknesses, match_advisory
from vigil.tvm.model import Advisory, Affected, Event, EventKind, Package, Range

I, F, L = EventKind.INTRODUCED, EventKind.FIXED, EventKind.LAST_AFFECTED


def adv(
    *events: tuple[EventKind, str],
    eco: str = "PyPI",
    name: str = "demo",
    versions: tuple[str, ...] = (),
    withdrawn: str | None = None,
    aliases: tuple[str, ...] = (),
    id: str = "X-1",
) -> Advisory:
    rng = (Range("ECOSYSTEM", tuple(Event(k, v) for k, v in events)),) if events else ()
    return Advisory(id, aliases, (Affected(eco, name, rng, versions),), withdrawn=withdrawn)


def pkg(version: str, name: str = "demo", eco: str = "PyPI") -> Package:
    return Package(eco, name, version)


def test_introduced_zero_means_every_version_below_the_fix() -> None:
    a = adv((I, "0"), (F, "1.2.0"))
    f = match_advisory(pkg("0.0.1"), a)
    assert f is not None and f.fixed == "1.2.0" and "fixed 1.2.0" in f.why
    assert match_advisory(pkg("1.2.0"), a) is None
    assert match_advisory(pkg("1.10.0"), a) is None  # numeric, not string, order


def test_last_affected_includes_that_version_only() -> None:
    a = adv((I, "1.0"), (L, "1.4"))
    f = match_advisory(pkg("1.4"), a)
    assert f is not None and f.fixed is None and "last affected 1.4" in f.why
    assert match_advisory(pkg("1.4.1"), a) is None
    assert match_advisory(pkg("0.9"), a) is None


def test_withdrawn_never_matches() -> None:
    assert match_advisory(pkg("1.0"), adv((I, "0"), withdrawn="2023-06-06T10:37:00Z")) is None


def test_versions_list_without_ranges_and_spelt_differently() -> None:
    a = adv(versions=("1.3.4", "2.0"))
    assert match_advisory(pkg("1.3.4"), a) is not None
    assert match_advisory(pkg("2.0.0"), a) is not None  # PEP 440: 2.0 == 2.0.0
    assert match_advisory(pkg("1.3.5"), a) is None


def test_multiple_ranges_in_one_event_list_and_unsorted_events() -> None:
    a = adv(
        (F, "2.9.4"),
        (I, "2.10.0"),
        (I, "0"),
        (F, "2.8.6"),
        (I, "2.9.0"),
        (F, "2.10.2"),
        eco="Go",
        name="github.com/x/y",
    )
    assert match_advisory(pkg("v2.8.5", "github.com/x/y", "Go"), a) is not None
    assert match_advisory(pkg("v2.8.7", "github.com/x/y", "Go"), a) is None  # between ranges
    f = match_advisory(pkg("2.10.1", "github.com/x/y", "Go"), a)
    assert f is not None and f.fixed == "2.10.2"
    assert match_advisory(pkg("2.10.2", "github.com/x/y", "Go"), a) is None


def test_debian_matches_the_source_package_and_respects_backports() -> None:
    a = adv((I, "0"), (F, "3.0.15-1~deb12u1"), eco="Debian:12", name="openssl")
    old = Package("Debian:12", "libssl3", "3.0.11-1~deb12u2", source_name="openssl")
    back = Package("Debian:12", "libssl3", "3.0.15-1~deb12u1", source_name="openssl")
    assert match_advisory(old, a) is not None
    assert match_advisory(back, a) is None  # the back-ported fix, though upstream 3.0.15 < 3.0.16
    assert match_advisory(Package("Debian:11", "libssl3", "3.0.1-1", source_name="openssl"), a) is None
    assert match_advisory(Package("Debian:12", "openssl", "3.0.11-1"), a) is not None  # no Source: line
    binnmu = Package("Debian:12", "libfoo", "1:2.0-1+b1", source_name="openssl", source_version="1:2.0-1")
    assert match_advisory(binnmu, a) is None  # epoch 1 beats the unepoched fix


def test_pypi_names_are_normalised() -> None:
    assert match_advisory(pkg("1.0", "Demo_Pkg"), adv((I, "0"), (F, "2"), name="demo-pkg")) is not None


def test_a_cve_through_several_advisories_is_one_weakness() -> None:
    p = Package("Debian:12", "openssl", "1.0-1")
    a1 = adv((I, "0"), (F, "1.0-2"), eco="Debian:12", name="openssl", id="DSA-1", aliases=("CVE-1", "CVE-2"))
    a2 = adv((I, "0"), (F, "1.0-3"), eco="Debian:12", name="openssl", id="DSA-2", aliases=("CVE-2",))
    findings = [f for a in (a1, a2) if (f := match_advisory(p, a)) is not None]
    weak = {w.cve: [f.advisory.id for f in w.findings] for w in group_weaknesses(findings)}
    assert weak == {"CVE-1": ["DSA-1"], "CVE-2": ["DSA-1", "DSA-2"]}


def test_related_cves_count_for_almalinux() -> None:
    a = Advisory("ALSA-1", related=("CVE-9", "RHBZ-1"))
    assert a.cves == ("CVE-9",)
