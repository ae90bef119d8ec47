"""OSV records the test writes: fields carried over, withdrawn honoured, bad shapes named."""

from __future__ import annotations

import pytest
import yaml

from vigil.tvm.feeds import FeedError
from vigil.tvm.feeds.osv import parse_osv
from vigil.tvm.matching import match_advisory
from vigil.tvm.model import Package

RECORD = """
id: PYSEC-9999-1
aliases: [CVE-2099-7]
withdrawn: null
affected:
- package: {ecosystem: PyPI, name: demo}
  ranges:
  - type: ECOSYSTEM
    events: [{introduced: "0"}, {fixed: "1.5"}]
  versions: ["1.0"]
severity:
- {type: CVSS_V3, score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}
"""


def test_a_yaml_record_matches_and_keeps_its_fields() -> None:
    a = parse_osv(yaml.safe_load(RECORD), "r.yaml")
    assert a.cves == ("CVE-2099-7",) and a.severity[0][0] == "CVSS_V3" and a.withdrawn is None
    f = match_advisory(Package("PyPI", "demo", "1.4"), a)
    assert f is not None and f.fixed == "1.5"
    withdrawn = parse_osv({**yaml.safe_load(RECORD), "withdrawn": "2024-01-01T00:00:00Z"}, "r.yaml")
    assert match_advisory(Package("PyPI", "demo", "1.4"), withdrawn) is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([], "r.json: not an OSV record"),
        ({"id": "X", "affected": {}}, "affected must be a list"),
        ({"id": "X", "affected": [{"package": {"name": "a"}}]}, r"affected\[0\].package needs"),
        (
            {
                "id": "X",
                "affected": [{"package": {"name": "a", "ecosystem": "PyPI"}, "ranges": [{"events": [{"fixd": "1"}]}]}],
            },
            r"events\[0\]: unknown event 'fixd'",
        ),
    ],
)
def test_bad_records_name_the_field(record: object, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        parse_osv(record, "r.json")
