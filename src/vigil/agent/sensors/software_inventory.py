"""The software inventory sensor: the device's installed software as package URLs, for vulnerability management.

Collected when the agent starts, whenever a package database or a watched folder changes (checked every
``software_inventory_check_seconds``) and in full every ``software_inventory_seconds``. What it sends is a diff
against the last inventory it spooled (kept in the state directory, so a restart sends only what changed):
DeviceEvents rows of action type ``SoftwareInventory`` whose AdditionalFields carry

    Series      one id per state file: a new one means the server must start over
    Generation  this inventory's number; Base: the one the diff applies to (null for a full inventory)
    Full        true: Added is the whole inventory
    Part/Parts  an inventory larger than one row's dynamic value is cut into parts, sent in order
    Added, Removed  package URLs

The server applies a diff only on the generation it holds, and otherwise waits for the next full inventory.
The walk runs on the sensor's own thread and yields the CPU whenever the agent is over its budget.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from vigil.agent.clock import iso
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorHealth, SensorThread
from vigil.content.tvm_inventory import HostInventory, HostSources, collect_host, watch_stamp
from vigil.tvm.purls import INVENTORY_ACTION, PurlError, inventory_parts, to_purl

log = logging.getLogger(__name__)

STATE_FILE = "software_inventory.json"


def host_sources(config: Any) -> HostSources:
    """The collection sources from the agent's settings (paths as strings)."""
    return replace(HostSources(), roots=tuple(Path(p) for p in config.software_inventory_paths),
                   exclude=tuple(config.software_inventory_exclude),
                   go_dirs=tuple(Path(p) for p in config.software_inventory_go_dirs))


class _Stopping(Exception):
    pass


class SoftwareInventorySensor:
    name = "software_inventory"

    def __init__(self, ctx: SensorContext, sources: HostSources | None = None) -> None:
        self._ctx = ctx
        self._sources = sources or host_sources(ctx.config)
        self._state_path = ctx.config.state_dir / STATE_FILE
        self._thread = SensorThread("vigil-sensor-software-inventory")
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self._watched: dict[str, tuple[int, int]] = {}
        self._last_full = float("-inf")
        self.collections = 0  # how many times the host was read (tests watch it)

    def probe(self) -> SensorHealth:
        return SensorHealth.active()

    def start(self) -> SensorHealth:
        self._health = SensorHealth(HealthState.ACTIVE, "collecting")
        self._thread.start(self._loop)
        return self._health

    def stop(self) -> None:
        self._thread.stop()

    def health(self) -> SensorHealth:
        return self._health

    def _loop(self) -> None:
        cfg = self._ctx.config
        self.collect()
        self._last_full = max(self._last_full, self._ctx.clock.monotonic())  # a diff at start counts as in sync
        while not self._thread.stopping.wait(cfg.software_inventory_check_seconds):
            due_full = self._ctx.clock.monotonic() - self._last_full >= cfg.software_inventory_seconds
            if due_full or self._changed():
                self.collect(full=due_full)

    def _pace(self) -> None:
        """Between folders and files of the walk: yield the CPU while the agent is over budget; end on stop."""
        if self._thread.stopping.is_set():
            raise _Stopping()
        self._ctx.budget.pace()

    def _changed(self) -> bool:
        return any(watch_stamp(p) != stamp for p, stamp in self._watched.items())

    def collect(self, full: bool = False) -> list[Row]:
        """Read the host, spool what changed since the last inventory (everything when ``full`` or at first)."""
        try:
            found = collect_host(self._sources, self._pace)
        except _Stopping:
            return []
        except OSError as e:  # the readers report per source; this is the walk itself failing
            self._health = SensorHealth(HealthState.DEGRADED, f"cannot read the software inventory: {e}")
            log.error("software_inventory: %s", e)
            return []
        self.collections += 1
        self._watched = found.watched
        rows, sent_full = self._rows(found, full)
        if rows:
            self._ctx.sink.append(rows)
        if sent_full:
            self._last_full = self._ctx.clock.monotonic()
        problems = found.errors
        self._health = (SensorHealth(HealthState.DEGRADED, f"{len(problems)} sources not read, first: {problems[0]}")
                        if problems else SensorHealth.active())
        for p in problems[:5]:
            log.warning("software_inventory: %s", p)
        return rows

    def _rows(self, found: HostInventory, full: bool) -> tuple[list[Row], bool]:
        purls: set[str] = set()
        for p in found.packages:
            try:
                purls.add(to_purl(p))
            except PurlError as e:
                found.errors.append(str(e))
        state = self._load_state()
        if state is None or full:
            series = state["series"] if state is not None else uuid.uuid4().hex
            generation = (state["generation"] + 1) if state is not None else 1
            base, added, removed = None, sorted(purls), []
        else:
            old = set(state["purls"])
            added, removed = sorted(purls - old), sorted(old - purls)
            if not added and not removed:
                return [], False
            series, base = state["series"], state["generation"]
            generation = base + 1
        stamp = iso(self._ctx.clock.now())
        rows: list[Row] = [{"table": "DeviceEvents", "Timestamp": stamp, "ActionType": INVENTORY_ACTION,
                            "AdditionalFields": part}
                           for part in inventory_parts(series, generation, base, added, removed)]
        self._save_state({"series": series, "generation": generation, "purls": sorted(purls)})
        return rows, base is None

    def _load_state(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return None
        if (not isinstance(doc, dict) or not isinstance(doc.get("series"), str)
                or not isinstance(doc.get("generation"), int) or not isinstance(doc.get("purls"), list)):
            return None
        return doc

    def _save_state(self, doc: dict[str, Any]) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self._state_path)
