"""RunAntiVirusScan: a real quick or full scan by the antivirus engine; each threat becomes a DeviceEvents row."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from vigil.agent.actions.base import ActionContext, ActionFailed, Outcome
from vigil.agent.antivirus import (
    DefinitionsRefused,
    detection_row,
    history,
    load_definitions,
    local_exclusions,
    record_scan,
    sha256_of,
)
from vigil.av.definitions import Definitions
from vigil.av.engine import Engine
from vigil.av.exclusions import ExclusionError, Exclusions
from vigil.av.scan import QUICK_PATHS, ScanReport, ScanType, be_polite, paths_for, run_scan
from vigil.wire import ActionCommand

log = logging.getLogger(__name__)
_TYPES = {"quick": ScanType.QUICK, "full": ScanType.FULL}
MAX_REPORTED = 100  # detections carried in the action result; every one is a DeviceEvents row


def definitions_for(ctx: ActionContext) -> Definitions:
    """The installed bundle, verified with the key this agent pinned at enrolment; else the built-in ones."""
    try:
        return load_definitions(ctx.settings.state_dir)
    except DefinitionsRefused as e:
        raise ActionFailed(str(e)) from None


def targets(ctx: ActionContext, scan_type: ScanType) -> list[str]:
    """What the scan covers; under a test's persistence root, that root's quick locations (or all of it)."""
    root = ctx.settings.persistence_root
    if root == Path("/"):
        return paths_for(scan_type)
    if scan_type is ScanType.FULL:
        return [str(root)]
    return [str(root) + p for p in QUICK_PATHS if os.path.lexists(str(root) + p)]


def _polite_scan(engine: Engine, scan_type: ScanType, paths: list[str], excluded: list[str],
                 exclusions: Exclusions | None = None) -> ScanReport:
    """The scan in its own thread, niced and at idle I/O (threads inherit it; the agent's own threads keep theirs)."""
    out: dict[str, Any] = {}

    def body() -> None:
        for problem in be_polite():
            log.info("antivirus scan: %s", problem)
        try:
            out["report"] = run_scan(engine, scan_type, paths, excluded=excluded, exclusions=exclusions)
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    t = threading.Thread(target=body, name="av-scan", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    report: ScanReport = out["report"]
    return report


def _scan(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    requested = str(cmd.parameters.get("ScanType", "Quick"))
    scan_type = _TYPES.get(requested.lower())
    if scan_type is None:
        raise ActionFailed(f"ScanType {requested!r} is not Quick or Full")
    engine = Engine(definitions_for(ctx))
    try:
        exclusions = local_exclusions(ctx.settings.state_dir)
    except ExclusionError as e:
        raise ActionFailed(f"the antivirus exclusions are unusable: {e}") from None
    report = _polite_scan(engine, scan_type, targets(ctx, scan_type), [str(ctx.settings.state_dir)], exclusions)
    for d in report.detections:
        row = detection_row(ctx.clock, d, source="Antivirus", action_taken="None", mode=None,
                            sha256=sha256_of(d.path), extra={"ActionId": cmd.action_id, "ScanType": requested})
        # The action's events carry everything in AdditionalFields (the agent's own rows have no file columns).
        ctx.event("AntivirusDetection", {**row["AdditionalFields"], "FolderPath": d.path, "SHA256": row.get("SHA256")})
    history(ctx.settings.state_dir).record(report.detections, when=ctx.clock.now(), source="Antivirus",
                                           action="None")
    if report.finished is not None:
        record_scan(ctx.settings.state_dir, str(scan_type), report.finished)
    ctx.event("AntivirusScanCompleted", {"ActionId": cmd.action_id, "ScanType": requested, "Files": report.files,
                                         "Bytes": report.bytes, "Threats": len(report.detections),
                                         "Seconds": round(report.seconds, 3),
                                         "DefinitionsVersion": report.definitions_version})
    output = report.as_dict()
    output["detections"] = output["detections"][:MAX_REPORTED]  # type: ignore[index]
    output["errors"] = output["errors"][:20]  # type: ignore[index]
    output["incomplete"] = output["incomplete"][:20]  # type: ignore[index]
    n = len(report.detections)
    threats = "no threats" if not n else f"{n} threat(s): " + ", ".join(
        sorted({d.threat.name for d in report.detections})[:5])
    return Outcome(f"{requested} antivirus scan: {report.files} files, {report.bytes // 1_000_000} MB in "
                   f"{report.seconds:.0f} s, definitions version {report.definitions_version}; {threats}", output)


HANDLERS = {"RunAntiVirusScan": _scan}
