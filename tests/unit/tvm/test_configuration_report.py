"""The secure configuration row the agent sends and the server reads back: a round trip keeps every field, evidence
is cut to fit one row, and a wrong field is refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.tvm.test_configuration import hardened
from vigil.content.tvm_config import RootView
from vigil.tvm.configuration import CHECKS, Assessment, Result, assess, secure_score
from vigil.tvm.configuration_report import MAX_CHARS, ReportError, read_report, report_fields, rows_score


def test_a_report_round_trips_with_the_same_score(tmp_path: Path) -> None:
    root = hardened(tmp_path)
    (root / "etc/ssh/sshd_config.d/10-vigil.conf").write_text("PermitRootLogin yes\n")
    results = assess(RootView(root))
    fields = json.loads(json.dumps(report_fields(results)))  # as it travels
    rows = {r.configuration_id: r for r in read_report(fields)}
    assert set(rows) == {c.id for c in CHECKS}
    root_login = rows["scid-vgl-1001"]
    assert (root_login.applicable, root_login.compliant, root_login.impact) == (True, False, 8.0)
    assert "PermitRootLogin yes" in root_login.evidence and "PermitRootLogin no" in root_login.remediation
    assert rows["scid-vgl-1002"].user_impact is True and root_login.user_impact is False
    assert fields["SecureScore"] == secure_score(results) == rows_score(list(rows.values())) < 100


def test_long_evidence_is_cut_so_the_row_fits() -> None:
    results = [Assessment(c, Result(False, "x" * 50_000)) for c in CHECKS]
    fields = report_fields(results)
    assert len(json.dumps(fields)) <= MAX_CHARS
    assert all(r["Evidence"].endswith("…") for r in fields["Assessments"])
    assert len(read_report(fields)) == len(CHECKS)


def _one(**change: Any) -> dict[str, Any]:
    row = {"ConfigurationId": "scid-vgl-1001", "ConfigurationImpact": 8, "IsApplicable": True, "IsCompliant": False,
           "Evidence": "PermitRootLogin yes", "ConfigurationName": "n"}
    row.update(change)
    return {"Assessments": [row]}


@pytest.mark.parametrize(("fields", "named"), [
    ("not json", "not JSON"),
    ([], "not an object"),
    ({"Assessments": []}, "Assessments must be"),
    (_one(ConfigurationId="../x"), "Assessments[0].ConfigurationId"),
    (_one(ConfigurationImpact=11), "Assessments[0].ConfigurationImpact"),
    (_one(ConfigurationImpact=True), "Assessments[0].ConfigurationImpact"),
    (_one(IsCompliant="yes"), "Assessments[0].IsCompliant"),
    (_one(IsApplicable=None), "Assessments[0].IsApplicable"),
    (_one(Evidence=7), "Assessments[0].Evidence"),
    ({"Assessments": _one()["Assessments"] * 2}, "Assessments[1].ConfigurationId 'scid-vgl-1001' is repeated"),
])
def test_a_wrong_field_is_refused_by_name(fields: Any, named: str) -> None:
    with pytest.raises(ReportError) as e:
        read_report(fields)
    assert named in str(e.value)


def test_a_check_that_does_not_apply_is_never_compliant() -> None:
    row = read_report(_one(IsApplicable=False, IsCompliant=True))[0]
    assert (row.applicable, row.compliant) == (False, False)
    assert rows_score([row]) == 0.0
