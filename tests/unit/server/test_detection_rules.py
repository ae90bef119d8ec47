"""Live detection's rule set: the operator's filters, placeholder values and timestamp parts apply to stored rows."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.unit.detect.support import rule_yaml

from vigil.detect import RuleSet
from vigil.server.detection import load_ruleset

NIGHT_ADMIN = "7b4c8d92-1e2f-4a3b-9c4d-5e6f7a8b9c0d"


def _rules(folder: Path) -> Path:
    folder.mkdir()
    (folder / "night_admin.yml").write_text(rule_yaml(
        "selection:\n  User|expand: '%admins%'\n  Timestamp|hour:\n    - 1\n    - 2\n    - 3\ncondition: selection",
        rule_id=NIGHT_ADMIN, title="Admin at night", logsource="product: linux\ncategory: process_creation"))
    (folder / "mf_backup.yml").write_text(
        "title: Backups run at night\nid: 8c5d9ea3-2f30-4b4c-8d5e-6f7a8b9c0d1e\n"
        "logsource:\n    product: linux\n    category: process_creation\n"
        f"filter:\n    rules: {NIGHT_ADMIN}\n    selection:\n        Image|endswith: '/restic'\n"
        "    condition: not selection\n")
    return folder


def _row(hour: int, user: str, path: str) -> dict[str, object]:
    return {"Timestamp": datetime(2026, 11, 28, hour, 15, tzinfo=UTC), "ActionType": "ProcessCreated",
            "AccountName": user, "FolderPath": path, "FileName": path.rsplit("/", 1)[-1]}


def _titles(ruleset: RuleSet, row: dict[str, object]) -> list[str]:
    return [h.title for h in ruleset.match_telemetry("DeviceProcessEvents", row)]  # as live detection does


def test_placeholders_filters_and_timestamp_parts_in_live_detection(tmp_path: Path) -> None:
    values = tmp_path / "placeholders.yml"
    values.write_text("admins: [root, ops]\n")
    detection = load_ruleset([_rules(tmp_path / "rules")], values)
    assert _titles(detection, _row(2, "ops", "/usr/bin/vi")) == ["Admin at night"]
    assert _titles(detection, _row(14, "ops", "/usr/bin/vi")) == []  # daytime
    assert _titles(detection, _row(2, "alice", "/usr/bin/vi")) == []  # not an admin
    assert _titles(detection, _row(2, "root", "/usr/local/bin/restic")) == []  # filtered


def test_a_broken_placeholder_file_is_logged_and_only_its_rules_are_skipped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    values = tmp_path / "placeholders.yml"
    values.write_text("admins: {root: yes}\n")
    with caplog.at_level(logging.WARNING, logger="vigil.detect"):
        ruleset = load_ruleset([_rules(tmp_path / "rules")], values)
    assert "placeholders.yml" in caplog.text and "not text or a number" in caplog.text
    assert "%admins%" in caplog.text  # the rule that needs it, skipped with the reason
    assert NIGHT_ADMIN not in {r.id for r in ruleset.rules}
    assert len(ruleset) > 0  # Vigil's own rules still load
