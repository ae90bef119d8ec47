"""Protection on the device: the bundle the server signs (vigil.asr.bundle: ASR policy, indicators) enforced as
network protection, in an nftables table of its own, and as ASR rules over the process-exec telemetry.

Network protection: addresses of Block (and Warn, which has no prompt here) IpAddress indicators, and the resolved
addresses of blocked DomainName and Url hosts, go in per-element counted sets that an output chain rejects; Audit
indicators in sets that are only counted. Allowed wins (vigil.asr.indicators), and the Vigil server's own addresses
are never blocked. A poll reads the counters and reports each increase as ``ExploitGuardNetworkProtectionBlocked``
or ``...Audited`` (packets per address, not per process: nftables does not know the process). The table is
``vigil_network_protection``, apart from isolation's, so neither disturbs the other.

ASR: every ProcessCreated row the sensors write is evaluated against the policy. Audit records
``Asr<Rule>Audited``. Block and Warn act after the exec there, so the process is killed (by pid and start time) and
the row is ``Asr<Rule>Terminated``, never ``Blocked``. A Warn match covered by an override (agent.asr_overrides)
is let through and recorded as ``Asr<Rule>Audited`` naming the override. Before the exec, the on-access gate
(agent.protection_gate) denies what it can decide then (file-hash indicators, and the rules decided by path and
parent), reported as ``Asr<Rule>Blocked|Warned`` and ``FileIndicatorBlocked|Audited``; it runs only while the
bundle needs it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from vigil.agent.actions.base import ActionFailed, ActionSettings
from vigil.agent.actions.isolation import _nft, management_endpoints
from vigil.agent.actions.kill import kill_exact
from vigil.agent.asr_overrides import Override, OverrideError, Overrides
from vigil.agent.clock import Clock, iso
from vigil.agent.fanotify import AccessGate, GateSettings, local_mounts, with_prefixes
from vigil.agent.protection_gate import FILE_TYPES, ProtectionHook
from vigil.agent.sensors.base import EventSink
from vigil.asr import AsrMode, catalogue, evaluate
from vigil.asr.bundle import Bundle, from_json
from vigil.asr.indicators import Indicator, IndicatorAction, IndicatorSet, IndicatorType, Observation

log = logging.getLogger(__name__)

TABLE = "vigil_network_protection"
STATE_FILE = "protection.json"
SERVICE = "protection"  # its key in the action context's services
RESOLVE_SECONDS = 300.0  # how long a blocked domain's resolved addresses are kept before resolving again
_BLOCKING = (IndicatorAction.BLOCK, IndicatorAction.BLOCK_AND_REMEDIATE, IndicatorAction.WARN)
Resolver = Callable[[str], list[str]]


def resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(i[4][0]) for i in infos})


@dataclass(frozen=True)
class Target:
    """One address in a set: why it is there."""

    address: str
    blocked: bool
    indicator: Indicator
    host: str = ""  # the domain or URL host it was resolved from


def targets(bundle: Bundle, now: datetime, resolver: Resolver, keep: frozenset[str] = frozenset()) -> list[Target]:
    """The addresses to block or count at ``now``: one per address, Allowed winning, ``keep`` never blocked."""
    matcher = bundle.indicator_set()
    found: dict[str, Target] = {}

    def consider(address: str, ob: Observation, host: str) -> None:
        verdict = matcher.verdict(ob, now, None)
        by_ip = matcher.verdict(Observation(ip=address), now, None)
        if verdict is None or address in found:
            return
        if by_ip is not None and by_ip.action is IndicatorAction.ALLOWED:
            return
        if verdict.action is IndicatorAction.ALLOWED:
            return
        blocked = verdict.action in _BLOCKING
        if blocked and address in keep:
            log.warning("indicator %s would block the Vigil server's address %s; not blocked", verdict.indicator.id,
                        address)
            return
        found[address] = Target(address, blocked, verdict.indicator, host)

    for ind in bundle.indicators:
        if not ind.applies(now, None):
            continue
        if ind.indicator_type is IndicatorType.IP_ADDRESS:
            consider(ind.indicator_value, Observation(ip=ind.indicator_value), "")
        elif ind.indicator_type in (IndicatorType.DOMAIN_NAME, IndicatorType.URL):
            ob = Observation(domain=ind.indicator_value) if ind.indicator_type is IndicatorType.DOMAIN_NAME \
                else Observation(url=ind.indicator_value)
            host = ind.indicator_value if ind.indicator_type is IndicatorType.DOMAIN_NAME else _host(ind)
            for address in resolver(host):
                consider(address, ob, host)
    return sorted(found.values(), key=lambda t: t.address)


def _host(ind: Indicator) -> str:
    from urllib.parse import urlsplit

    value = ind.indicator_value
    return urlsplit(value if "://" in value else f"http://{value}").hostname or ""


def _set_name(t: Target) -> str:
    return ("block" if t.blocked else "audit") + ("6" if ":" in t.address else "4")


def render(found: Sequence[Target]) -> str:
    """The whole table in one nft transaction (re-creating it replaces the old one atomically)."""
    sets = {name: sorted(t.address for t in found if _set_name(t) == name)
            for name in ("block4", "block6", "audit4", "audit6")}

    def declare(name: str) -> str:
        kind = "ipv6_addr" if name.endswith("6") else "ipv4_addr"
        elements = f" elements = {{ {', '.join(sets[name])} }};" if sets[name] else ""
        return f"  set {name} {{ type {kind}; counter;{elements} }}\n"

    return (
        f"table inet {TABLE}\ndelete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n" + "".join(declare(n) for n in sets)
        + "  chain output {\n    type filter hook output priority filter - 5; policy accept;\n"
        "    ip daddr @audit4\n    ip6 daddr @audit6\n"
        "    ip daddr @block4 reject with icmpx type admin-prohibited\n"
        "    ip6 daddr @block6 reject with icmpx type admin-prohibited\n  }\n}\n"
    )


def read_counters(settings: ActionSettings) -> dict[str, int]:
    """Packets per address matched so far, from the sets' per-element counters (empty when no table)."""
    done = _nft(settings, ["-j", "list", "table", "inet", TABLE])
    if done.returncode != 0:
        return {}
    out: dict[str, int] = {}
    for item in json.loads(done.stdout).get("nftables", []):
        for elem in item.get("set", {}).get("elem", []):
            e = elem.get("elem", {})
            if isinstance(e.get("val"), str):
                out[e["val"]] = int(e.get("counter", {}).get("packets", 0))
    return out


class Protection:
    """The device's protection state: the bundle in force, its nftables table, and the ASR evaluation."""

    def __init__(self, settings: ActionSettings, clock: Clock, sink: EventSink, *, resolver: Resolver = resolve,
                 poll_seconds: float = 5.0, gate_marks: tuple[str, ...] | None = None) -> None:
        self.settings, self.clock, self.sink = settings, clock, sink
        self.resolver = resolver
        self.poll_seconds = poll_seconds
        self.bundle: Bundle | None = None
        self.matcher: IndicatorSet | None = None
        self.file_kinds: frozenset[IndicatorType] = frozenset()
        # The on-access gate (mounts: every local one unless given), started only when the bundle needs it.
        self.gate_marks = gate_marks
        self.gate: AccessGate | None = None
        self.gate_error = ""
        self.overrides = Overrides(settings.state_dir)
        self._override_lock = threading.Lock()
        self._hook = ProtectionHook(self)
        self._targets: dict[str, Target] = {}
        self._counters: dict[str, int] = {}
        self._resolved: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._keep: frozenset[str] | None = None

    # --- the bundle ------------------------------------------------------------------------------------------

    @property
    def _state(self) -> Path:
        return self.settings.state_dir / STATE_FILE

    def apply(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Validate, persist and enforce a bundle; what is now in force."""
        try:
            bundle = from_json(data)
        except ValueError as e:
            raise ActionFailed(f"the protection bundle is malformed: {e}") from None
        if isinstance(data.get("Antivirus"), Mapping):
            # The group's antivirus policy rides in the same signed command; the antivirus sensor reads it.
            from vigil.agent.antivirus import store_served_policy
            from vigil.av.policy import PolicyError

            try:
                store_served_policy(self.settings.state_dir, data["Antivirus"])
            except PolicyError as e:
                raise ActionFailed(f"the protection bundle's antivirus policy is refused: {e}") from None
        tmp = self._state.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dict(data), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._state)
        with self._lock:
            self.matcher = bundle.indicator_set()
            self.file_kinds = frozenset(i.indicator_type for i in bundle.indicators) & FILE_TYPES
            self.bundle = bundle
            self._resolved.clear()
        self._sync_gate()
        return {**self.refresh(force=True), "gate": self.gate is not None, "gateError": self.gate_error}

    def _sync_gate(self) -> None:
        """Start the gate when the bundle has something to deny before an exec; stop it when not."""
        if self._hook.needed() and self.gate is None:
            marks = self.gate_marks if self.gate_marks is not None else tuple(local_mounts())
            gate = AccessGate(GateSettings(marks=marks, close_write=False,
                                           never_block=with_prefixes([str(self.settings.state_dir)])), [self._hook])
            try:
                gate.start()
            except OSError as e:  # no fanotify permission events here: the telemetry path still terminates
                self.gate_error = f"fanotify permission events refused: {e}"
                log.warning("pre-exec protection unavailable: %s", self.gate_error)
                return
            self.gate, self.gate_error = gate, ""
        elif not self._hook.needed() and self.gate is not None:
            self.gate.stop()
            self.gate = None

    def restore(self) -> str | None:
        """At agent start: the last bundle, enforced again (a reboot flushed the ruleset)."""
        try:
            data = json.loads(self._state.read_text())
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise ActionFailed(f"{self._state} is unreadable: {e}") from e
        summary = self.apply(data)
        return f"protection bundle {summary['revision']}"

    def _resolve(self, host: str) -> list[str]:
        now = self.clock.monotonic()
        cached = self._resolved.get(host)
        if cached is None or now - cached[0] > RESOLVE_SECONDS:
            cached = (now, self.resolver(host))
            self._resolved[host] = cached
        return cached[1]

    def refresh(self, force: bool = False) -> dict[str, Any]:
        """Recompute the addresses (expiry, re-resolution) and re-apply the table when they changed."""
        with self._lock:
            bundle = self.bundle
        if bundle is None:
            return {"revision": "", "blocked": [], "audited": []}
        if self._keep is None:
            try:
                self._keep = frozenset(a for a, _ in management_endpoints(self.settings.server_url))
            except ActionFailed:
                self._keep = frozenset()
        found = targets(bundle, self.clock.now(), self._resolve, self._keep)
        by_address = {t.address: t for t in found}
        changed = {a: (t.blocked, t.indicator.id) for a, t in by_address.items()} != {
            a: (t.blocked, t.indicator.id) for a, t in self._targets.items()}
        if force or changed:
            self._report_counters()  # what the old table counted, before re-creating it zeroes the counters
            if found:
                done = _nft(self.settings, ["-f", "-"], render(found))
            elif _nft(self.settings, ["list", "table", "inet", TABLE]).returncode == 0:
                done = _nft(self.settings, ["delete", "table", "inet", TABLE])  # nothing left to filter
            else:
                done = None  # nothing to filter and no table: nft is not touched
            if done is not None and done.returncode != 0:
                raise ActionFailed(f"nft refused the network protection table: {done.stderr.strip()}")
            self._targets, self._counters = by_address, {}
        return {"revision": bundle.revision, "blocked": sorted(a for a, t in by_address.items() if t.blocked),
                "audited": sorted(a for a, t in by_address.items() if not t.blocked)}

    # --- network protection events ---------------------------------------------------------------------------

    def _report_counters(self) -> None:
        counts = read_counters(self.settings)
        rows = []
        for address, packets in counts.items():
            delta = packets - self._counters.get(address, 0)
            target = self._targets.get(address)
            if delta <= 0 or target is None:
                continue
            ind = target.indicator
            rows.append({
                "table": "DeviceEvents", "Timestamp": iso(self.clock.now()),
                "ActionType": "ExploitGuardNetworkProtection" + ("Blocked" if target.blocked else "Audited"),
                "RemoteIP": address,
                "AdditionalFields": {"IndicatorId": ind.id, "IndicatorTitle": ind.title,
                                     "IndicatorType": ind.indicator_type.value, "IndicatorValue": ind.indicator_value,
                                     "RemoteUrl": target.host, "Packets": delta,
                                     "ResponseCategory": "CustomBlockList" if target.blocked else "CustomAuditList"},
            })
        self._counters = counts
        if rows:
            self.sink.append(rows)

    def poll_once(self) -> None:
        """One round of the poll thread: report the counters and new Warn overrides, and follow expiry and DNS
        changes."""
        self._report_counters()
        self.report_overrides()
        self.refresh()

    # --- Warn overrides (agent.asr_overrides) ----------------------------------------------------------------

    def override_for(self, rule_id: str, row: Mapping[str, Any]) -> Override | None:
        """The override that lets this Warn match through, if one does; a broken file overrides nothing."""
        try:
            found = self.overrides.covering(rule_id, row, self.clock.now())
        except OverrideError as e:
            log.error("Warn overrides ignored: %s", e)
            return None
        if found is not None:
            self.report_overrides()
        return found

    def report_overrides(self) -> None:
        """Each override granted since the last report, once, as Asr<Rule>WarnOverridden."""
        with self._override_lock:
            try:
                new = self.overrides.unreported()
            except OverrideError as e:
                log.error("Warn overrides not reported: %s", e)
                return
            if new:
                self.sink.append([o.event(iso(self.clock.now())) for o in new])
                self.overrides.mark_reported(new)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.poll_seconds):
                try:
                    self.poll_once()
                except (ActionFailed, OSError, ValueError) as e:
                    log.error("network protection poll failed: %s", e)

        self._thread = threading.Thread(target=loop, name="vigil-protection", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; the table stays (protection outlives the agent, as isolation does)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.gate is not None:
            self.gate.stop()
            self.gate = None
        with contextlib.suppress(ActionFailed, OSError, ValueError):
            self._report_counters()

    # --- ASR over the process-exec telemetry -----------------------------------------------------------------

    def observe(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Evaluate each new process against the ASR policy; record and, for Block/Warn, terminate."""
        with self._lock:
            bundle = self.bundle
        if bundle is None:
            return
        out = []
        for row in rows:
            table = str(row.get("table") or "")
            if table != "DeviceProcessEvents" or row.get("ActionType") != "ProcessCreated":
                continue
            for d in evaluate(catalogue(), bundle.policies, bundle.group_id, table, row):
                outcome = "Audited"
                detail = ""
                override = self.override_for(d.rule.guid, row) if d.mode is AsrMode.WARN else None
                if override is not None:
                    detail = f"let through by Warn override {override.id} (until {override.expires})"
                elif d.mode in (AsrMode.BLOCK, AsrMode.WARN):
                    outcome, detail = self._terminate(row)
                out.append({
                    "table": "DeviceEvents", "Timestamp": iso(self.clock.now()),
                    "ActionType": f"Asr{d.rule.name}{outcome}",
                    "FileName": row.get("FileName"), "FolderPath": row.get("FolderPath"),
                    "ProcessId": row.get("ProcessId"), "ProcessCommandLine": row.get("ProcessCommandLine"),
                    "AccountName": row.get("AccountName"),
                    "InitiatingProcessFileName": row.get("InitiatingProcessFileName"),
                    "InitiatingProcessFolderPath": row.get("InitiatingProcessFolderPath"),
                    "InitiatingProcessId": row.get("InitiatingProcessId"),
                    "InitiatingProcessCommandLine": row.get("InitiatingProcessCommandLine"),
                    "AdditionalFields": {"RuleId": d.rule.guid, "RuleName": d.rule.name, "Mode": d.mode.name.title(),
                                         **({"Detail": detail} if detail else {})},
                })
        if out:
            self.sink.append(out)

    def _terminate(self, row: Mapping[str, Any]) -> tuple[str, str]:
        pid = row.get("ProcessId")
        created = row.get("ProcessCreationTime")
        if not isinstance(pid, int):
            return "Audited", "no process id to terminate"
        when = datetime.fromisoformat(str(created).replace("Z", "+00:00")) if created else None
        try:
            kill_exact(pid, when, wait=2.0)
        except ActionFailed as e:  # it ended already, or the pid was reused: nothing was stopped
            return "TerminationFailed", str(e)
        return "Terminated", "killed after exec (the exec was not denied)"

    def tap(self, sink: EventSink) -> EventSink:
        """``sink`` with every row also seen by ``observe``: the sensors' sink on a protected device."""
        return _Tap(self, sink)


class _Tap:
    def __init__(self, protection: Protection, sink: EventSink) -> None:
        self._p, self._sink = protection, sink

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._sink.append(rows)
        try:
            self._p.observe(rows)
        except (OSError, ValueError) as e:  # protection must never cost the telemetry
            log.error("ASR evaluation failed: %s", e)
