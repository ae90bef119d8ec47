"""What a reversible remediation changed, kept on the agent under its action id until the undo puts it back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vigil.agent.actions.base import ActionFailed, ActionSettings


class UndoRecords:
    """One JSON record per action (and any whole file it moved away) in the agent's state folder, owner-only."""

    def __init__(self, settings: ActionSettings) -> None:
        self.folder = settings.state_dir / "undo"
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)

    def kept_file(self, action_id: str) -> Path:
        return self.folder / f"{action_id}.file"

    def put(self, action_id: str, kind: str, data: dict[str, Any]) -> None:
        tmp = self.folder / f"{action_id}.json.tmp"
        tmp.write_text(json.dumps({"kind": kind, **data}))
        os.replace(tmp, self.folder / f"{action_id}.json")

    def get(self, action_id: str, kind: str) -> dict[str, Any]:
        """The record of ``action_id``, which must be a ``kind`` action this agent ran and has not undone yet."""
        try:
            data: dict[str, Any] = json.loads((self.folder / f"{action_id}.json").read_text())
        except FileNotFoundError:
            raise ActionFailed(f"this device holds no record of action {action_id} (never run here, or already "
                               "undone)") from None
        if data.get("kind") != kind:
            raise ActionFailed(f"action {action_id} was a {data.get('kind')}, not a {kind}")
        return data

    def drop(self, action_id: str) -> None:
        (self.folder / f"{action_id}.json").unlink(missing_ok=True)
