"""The agent's AntivirusDetection rows say which kind of signature matched, so an investigation tells YARA apart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil.agent.antivirus import detection_row
from vigil.av.builtin import EICAR_THREAT
from vigil.av.model import Detection, Severity, Source, Threat, ThreatType


class _Clock:
    def now(self) -> datetime:
        return datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return 0.0


@pytest.mark.parametrize(("threat", "source"), [
    (Threat("Backdoor:Linux/WebShell.A", ThreatType.MALWARE, Severity.HIGH, Source.YARA, "webshell_php"), "yara"),
    (EICAR_THREAT, "builtin"),
])
def test_detection_row_names_the_signature_source(threat: Threat, source: str) -> None:
    row = detection_row(_Clock(), Detection("/tmp/x", threat), source="Antivirus", action_taken="None",
                        mode=None, sha256="ab" * 32)
    assert row["AdditionalFields"]["SignatureSource"] == source
    assert row["AdditionalFields"]["Signature"] == threat.signature
