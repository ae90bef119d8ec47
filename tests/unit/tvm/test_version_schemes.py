"""Hypothesis properties of each ecosystem's version order, and the order's known traps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.tvm.version_schemes import UnknownEcosystem, scheme_for

nums = st.integers(min_value=0, max_value=50)


@given(nums, nums, nums, nums)
def test_dpkg_orders_upstream_then_revision(a: int, b: int, r1: int, r2: int) -> None:
    s = scheme_for("Debian:12")
    x, y = s.parse(f"{a}.{b}-{r1}"), s.parse(f"{a}.{b}-{r2}")
    assert (x < y) == (r1 < r2)
    assert s.parse(f"{a}.{b}~rc1-{r1}") < s.parse(f"{a}.{b}-{r1}")  # tilde sorts before everything
    assert s.parse(f"1:{a}.{b}-{r1}") > s.parse(f"{a + 1}.{b}-{r1}")  # epoch first


@given(nums, nums, nums)
def test_rpm_epoch_and_numeric_order(a: int, b: int, c: int) -> None:
    s = scheme_for("AlmaLinux:9")
    assert s.parse(f"{a}.{b}-{c}.el9") < s.parse(f"{a}.{b + 1}-1.el9")
    assert s.parse(f"1:{a}.{b}-{c}") > s.parse(f"{a + 100}.0-1")


@given(nums, nums, nums)
def test_pep440_prereleases_and_equal_spellings(a: int, b: int, c: int) -> None:
    s = scheme_for("PyPI")
    assert s.parse(f"{a}.{b}.{c}rc1") < s.parse(f"{a}.{b}.{c}")
    assert s.parse(f"{a}.{b}") == s.parse(f"{a}.{b}.0")
    assert s.parse(f"{a}.{b}.{c}.post1") > s.parse(f"{a}.{b}.{c}")


@given(nums, nums, nums, nums)
def test_semver_total_order_matches_tuples(a: int, b: int, c: int, d: int) -> None:
    for eco in ("npm", "Go"):
        s = scheme_for(eco)
        x, y = s.parse(f"{a}.{b}.{c}"), s.parse(f"{a}.{d}.{c}")
        assert (x < y) == (b < d)
        assert s.parse(f"{a}.{b}.{c}-rc.1") < s.parse(f"{a}.{b}.{c}")


def test_go_accepts_the_v_prefix_and_an_unknown_ecosystem_is_refused() -> None:
    assert scheme_for("Go").parse("v1.2.3") == scheme_for("Go").parse("1.2.3")
    with pytest.raises(UnknownEcosystem):
        scheme_for("Hackage")
