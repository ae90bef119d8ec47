"""Windows events from the shippers sites already run: Winlogbeat and Fluent Bit JSON to flat events and to
Defender's tables.

Two outputs per event: the flat Windows event (System fields and EventData by name, as ``vigil triage`` sees an
EVTX record), which the SigmaHQ Windows rules match, and a row of Defender's advanced-hunting table for the event,
from the one mapping declared here (``MAPPINGS``). A Sysmon or Security event without a mapping is still matched
by the rules; it is just not stored as a row.
"""

from __future__ import annotations

import hashlib
import json
import ntpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SYSMON = "Microsoft-Windows-Sysmon/Operational"
SECURITY = "Security"


class ShipperFormatError(ValueError):
    """An event that is neither Winlogbeat's nor Fluent Bit's shape; says which field is missing or wrong."""


@dataclass(frozen=True)
class TableMapping:
    table: str
    action_type: str
    # Defender column -> the flat event's field it comes from.
    columns: Mapping[str, str]
    # Columns that take the file name of a path field (FileName of Image).
    basenames: Mapping[str, str] = field(default_factory=dict)


_PROCESS = {"FolderPath": "Image", "ProcessCommandLine": "CommandLine", "ProcessId": "ProcessId",
            "ProcessCurrentWorkingDirectory": "CurrentDirectory", "AccountName": "User",
            "InitiatingProcessFolderPath": "ParentImage", "InitiatingProcessCommandLine": "ParentCommandLine",
            "InitiatingProcessId": "ParentProcessId", "InitiatingProcessAccountName": "ParentUser"}
_INITIATOR = {"InitiatingProcessFolderPath": "Image", "InitiatingProcessId": "ProcessId",
              "InitiatingProcessAccountName": "User"}

# The mapping, declared once: (channel, event id) -> Defender table, action and columns.
MAPPINGS: dict[tuple[str, int], TableMapping] = {
    (SYSMON, 1): TableMapping("DeviceProcessEvents", "ProcessCreated", _PROCESS,
                              {"FileName": "Image", "InitiatingProcessFileName": "ParentImage"}),
    (SYSMON, 3): TableMapping("DeviceNetworkEvents", "ConnectionSuccess", {
        **_INITIATOR, "RemoteIP": "DestinationIp", "RemotePort": "DestinationPort", "RemoteUrl": "DestinationHostname",
        "LocalIP": "SourceIp", "LocalPort": "SourcePort", "Protocol": "Protocol"},
        {"InitiatingProcessFileName": "Image"}),
    (SYSMON, 11): TableMapping("DeviceFileEvents", "FileCreated", {**_INITIATOR, "FolderPath": "TargetFilename"},
                               {"FileName": "TargetFilename", "InitiatingProcessFileName": "Image"}),
    (SYSMON, 23): TableMapping("DeviceFileEvents", "FileDeleted", {**_INITIATOR, "FolderPath": "TargetFilename"},
                               {"FileName": "TargetFilename", "InitiatingProcessFileName": "Image"}),
    (SECURITY, 4624): TableMapping("DeviceLogonEvents", "LogonSuccess", {
        "AccountName": "TargetUserName", "AccountDomain": "TargetDomainName", "LogonType": "LogonType",
        "RemoteDeviceName": "WorkstationName", "RemoteIP": "IpAddress", "RemotePort": "IpPort",
        "InitiatingProcessFolderPath": "ProcessName", "InitiatingProcessId": "ProcessId"},
        {"InitiatingProcessFileName": "ProcessName"}),
    (SECURITY, 4625): TableMapping("DeviceLogonEvents", "LogonFailed", {
        "AccountName": "TargetUserName", "AccountDomain": "TargetDomainName", "LogonType": "LogonType",
        "RemoteDeviceName": "WorkstationName", "RemoteIP": "IpAddress", "RemotePort": "IpPort",
        "FailureReason": "FailureReason", "InitiatingProcessFolderPath": "ProcessName",
        "InitiatingProcessId": "ProcessId"}, {"InitiatingProcessFileName": "ProcessName"}),
}
# Sysmon 12-14 (registry) have no row: Defender's DeviceRegistryEvents is not one of Vigil's tables yet. The
# registry rules still match them, since the rules see the flat event.

_INT_COLUMNS = {"ProcessId", "InitiatingProcessId", "RemotePort", "LocalPort"}


@dataclass(frozen=True)
class HostFacts:
    name: str
    os_platform: str = "Windows"
    os_version: str = ""
    os_build: str = ""
    shipper: str = ""


@dataclass(frozen=True)
class WindowsEvent:
    flat: dict[str, Any]  # as the Sigma rules see it
    timestamp: str
    host: HostFacts
    record_id: int | None


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict | list) else str(v)


def _mapping(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def from_winlogbeat(doc: Mapping[str, Any], where: str) -> WindowsEvent:
    """A Winlogbeat (ECS) document: ``winlog.channel``, ``winlog.event_id``, ``winlog.event_data``, ``host.os``."""
    winlog = doc.get("winlog")
    if not isinstance(winlog, Mapping):
        raise ShipperFormatError(f"{where}.winlog: missing (not a Winlogbeat event)")
    for key in ("channel", "event_id"):
        if key not in winlog:
            raise ShipperFormatError(f"{where}.winlog.{key}: missing")
    try:
        event_id = int(winlog["event_id"])
    except (TypeError, ValueError):
        raise ShipperFormatError(f"{where}.winlog.event_id: not a number: {winlog['event_id']!r}") from None
    stamp = doc.get("@timestamp")
    if not isinstance(stamp, str):
        raise ShipperFormatError(f"{where}.@timestamp: missing")
    computer = winlog.get("computer_name") or _mapping(doc.get("host")).get("name")
    if not isinstance(computer, str) or not computer:
        raise ShipperFormatError(f"{where}.winlog.computer_name: missing")
    flat: dict[str, Any] = {"Channel": winlog["channel"], "EventID": event_id, "Computer": computer,
                            "Provider_Name": winlog.get("provider_name"), "EventRecordID": winlog.get("record_id")}
    for section in ("event_data", "user_data"):
        data = winlog.get(section)
        if isinstance(data, Mapping):
            flat.update({k: _text(v) for k, v in data.items() if v is not None})
    host = _mapping(doc.get("host"))
    os_info = _mapping(host.get("os"))
    agent = _mapping(doc.get("agent"))
    facts = HostFacts(computer, "Windows", str(os_info.get("version") or os_info.get("name") or ""),
                      str(os_info.get("build") or ""), f"{agent.get('type', 'winlogbeat')} {agent.get('version', '')}")
    rid = winlog.get("record_id")
    return WindowsEvent({k: v for k, v in flat.items() if v is not None}, stamp, facts,
                        int(rid) if isinstance(rid, int | str) and str(rid).isdigit() else None)


def from_fluentbit(doc: Mapping[str, Any], where: str) -> WindowsEvent:
    """Fluent Bit's ``winevtlog`` record: ``Channel``, ``EventID``, ``Computer``, ``TimeCreated`` and the event's
    data as an ``EventData`` map (its ``StringInserts`` list has no names, so rules could not match it)."""
    for key in ("Channel", "EventID", "Computer", "TimeCreated"):
        if key not in doc:
            raise ShipperFormatError(f"{where}.{key}: missing (not a Fluent Bit winevtlog record)")
    data = doc.get("EventData")
    if not isinstance(data, Mapping):
        raise ShipperFormatError(f"{where}.EventData: missing; set Fluent Bit's winevtlog to render event data "
                                 "by name (StringInserts have no field names)")
    try:
        event_id = int(doc["EventID"])
    except (TypeError, ValueError):
        raise ShipperFormatError(f"{where}.EventID: not a number: {doc['EventID']!r}") from None
    flat: dict[str, Any] = {"Channel": doc["Channel"], "EventID": event_id, "Computer": doc["Computer"],
                            "Provider_Name": doc.get("ProviderName"), "EventRecordID": doc.get("RecordNumber")}
    flat.update({k: _text(v) for k, v in data.items() if v is not None})
    stamp = str(doc["TimeCreated"])
    if " " in stamp and "T" not in stamp:  # Fluent Bit writes "2026-12-07 10:00:00 +0000"
        day, clock, *zone = stamp.split(" ")
        stamp = f"{day}T{clock}{zone[0][:3] + ':' + zone[0][3:] if zone else 'Z'}"
    rid = doc.get("RecordNumber")
    return WindowsEvent({k: v for k, v in flat.items() if v is not None}, stamp,
                        HostFacts(str(doc["Computer"]), shipper="fluent-bit"),
                        int(rid) if isinstance(rid, int) else None)


def parse_event(doc: Any, where: str) -> WindowsEvent:
    if not isinstance(doc, Mapping):
        raise ShipperFormatError(f"{where}: expected a JSON object")
    if "winlog" in doc:
        return from_winlogbeat(doc, where)
    if "Channel" in doc and "EventID" in doc:
        return from_fluentbit(doc, where)
    raise ShipperFormatError(f"{where}: neither a Winlogbeat event (winlog.*) nor a Fluent Bit winevtlog record "
                             "(Channel, EventID)")


def device_id_for(source_id: int, computer: str) -> str:
    """The device a shipped host becomes: stable per source and host name, Defender's 40-hex machine id shape."""
    return hashlib.sha256(f"vigil-shipped:{source_id}:{computer.lower()}".encode()).hexdigest()[:40]


def _int(value: Any) -> int | None:
    text = str(value).strip()
    if text.lower().startswith("0x"):
        try:
            return int(text, 16)
        except ValueError:
            return None
    return int(text) if text.lstrip("-").isdigit() else None


def to_row(event: WindowsEvent, device_id: str, report_id: int) -> dict[str, Any] | None:
    """The event's Defender-table row (with ``table``), or None when no mapping covers its channel and id."""
    flat = event.flat
    mapping = MAPPINGS.get((str(flat.get("Channel")), int(flat["EventID"])))
    if mapping is None:
        return None
    row: dict[str, Any] = {"table": mapping.table, "Timestamp": event.timestamp, "DeviceId": device_id,
                           "DeviceName": event.host.name, "ActionType": mapping.action_type, "ReportId": report_id}
    for column, source in mapping.columns.items():
        value = flat.get(source)
        if value in (None, "", "-"):
            continue
        row[column] = _int(value) if column in _INT_COLUMNS else value
        if row[column] is None:
            del row[column]
    for column, source in mapping.basenames.items():
        if flat.get(source):
            row[column] = ntpath.basename(str(flat[source]))
    if "Hashes" in flat:
        hashes = dict(p.split("=", 1) for p in str(flat["Hashes"]).split(",") if "=" in p)
        if "SHA256" in hashes and mapping.table != "DeviceLogonEvents":
            row["SHA256" if mapping.table == "DeviceProcessEvents" else "InitiatingProcessSHA256"] = hashes["SHA256"]
    if "User" in flat and mapping.table == "DeviceProcessEvents" and "\\" in str(flat["User"]):
        row["AccountDomain"], row["AccountName"] = str(flat["User"]).split("\\", 1)
    return row
