"""Risk and exposure formulas: their documented values, bounds and monotonicity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.tvm.scores import ExposureBand, exposure_band, exposure_score, finding_risk


def test_documented_values() -> None:
    assert finding_risk(9.8, None, None, kev=True, fixed=True) == 98.0
    assert finding_risk(None, "Moderate", 0.0, kev=False, fixed=False) == pytest.approx(23.4)
    assert finding_risk(5.0, None, None, kev=False, fixed=True, criticality="high") == pytest.approx(34.4)
    assert exposure_score([]) == 0
    assert exposure_band(exposure_score([98.0])) is ExposureBand.HIGH
    assert exposure_band(exposure_score([20.0])) is ExposureBand.LOW


def test_band_edges_and_bad_input() -> None:
    assert [exposure_band(s) for s in (0, 29, 30, 69, 70, 100)] == ["low", "low", "medium", "medium", "high", "high"]
    for bad in (
        lambda: exposure_band(101),
        lambda: finding_risk(11, None, None, False, True),
        lambda: finding_risk(5, None, 2, False, True),
        lambda: finding_risk(5, None, None, False, True, "x"),
    ):
        with pytest.raises(ValueError):
            bad()


risks = st.lists(st.floats(min_value=0, max_value=100), max_size=30)


@given(risks, st.floats(min_value=0, max_value=100))
def test_exposure_is_bounded_and_grows_with_each_weakness(rs: list[float], extra: float) -> None:
    s = exposure_score(rs)
    assert 0 <= s <= 100
    assert exposure_score([*rs, extra]) >= s


@given(st.floats(min_value=0, max_value=10), st.floats(min_value=0, max_value=1))
def test_kev_and_a_fix_never_lower_risk(cvss: float, epss: float) -> None:
    base = finding_risk(cvss, None, epss, kev=False, fixed=False)
    assert finding_risk(cvss, None, epss, kev=True, fixed=False) >= base
    assert finding_risk(cvss, None, epss, kev=False, fixed=True) >= base
    assert 0 <= base <= 100
