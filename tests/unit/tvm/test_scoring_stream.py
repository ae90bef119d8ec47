"""The streamed scoring (`posture.Scoring`, what the service folds rows from the store with) gives the same device
scores and recommendations as the reference functions over the rows as dicts, with exceptions and risks of 100."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.tvm import posture

rows = st.lists(st.tuples(
    st.sampled_from(["d1", "d2", "d3", "d4"]), st.sampled_from([1, 2]), st.sampled_from(["debian", "pypi"]),
    st.sampled_from(["openssl", "curl", "demo"]), st.sampled_from(["CVE-1", "CVE-2", "CVE-3"]),
    st.sampled_from([0.0, 12.5, 40.0, 77.7, 100.0]), st.sampled_from([None, "1.0-1", "2.0-1"]),
    st.sampled_from([None, 5.0, 9.8]), st.booleans()), max_size=25)
exceptions = st.lists(st.builds(posture.Exception_, st.sampled_from(["va-_-debian-_-openssl", "va-_-pypi-_-demo"]),
                                st.sampled_from([None, frozenset({1}), frozenset({2})])), max_size=2)


@settings(max_examples=150, deadline=None)
@given(rows, exceptions)
def test_streamed_scores_and_recommendations_equal_the_reference(facts: list[tuple], exc: list) -> None:  # type: ignore[type-arg]
    dicts = [{"DeviceId": d, "group_id": g, "SoftwareVendor": v, "SoftwareName": n, "CveId": c, "RiskScore": r,
              "FixedVersion": f, "CvssScore": cv, "IsKnownExploited": k, "Ecosystem": "Debian:12"}
             for d, g, v, n, c, r, f, cv, k in facts]
    devices = ["d1", "d2", "d3", "d4", "d5"]
    per: dict[str, list[dict]] = {d: [] for d in devices}  # type: ignore[type-arg]
    for w in dicts:
        per[w["DeviceId"]].append(w)
    want_scores = {d: posture.device_exposure(ws, exc) for d, ws in per.items()}
    scoring = posture.Scoring(exc)
    for d, g, v, n, c, r, f, cv, k in facts:
        scoring.add(d, g, v, n, c, r, f, cv, k, "Debian:12")
    got_scores = scoring.scores(devices)
    assert got_scores == want_scores
    assert scoring.recommendations(got_scores) == posture.recommendations(dicts, want_scores, exc)
