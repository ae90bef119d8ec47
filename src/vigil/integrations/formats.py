"""Wire formats for SIEMs: CEF and LEEF payloads, RFC 5424 syslog with RFC 6587 octet counting, ECS documents.

Each is a pure function of a ``Record``; the transports in ``exporters`` only frame and send them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from vigil.integrations.records import ALERTS, Record

VENDOR, PRODUCT = "Vigil", "Vigil"
# The CEF and LEEF keys for the columns SIEMs parse; every other column rides in a custom string field.
_CEF_KEYS = {
    "DeviceName": "dhost", "DeviceId": "deviceExternalId", "AccountName": "suser", "FileName": "fname",
    "FolderPath": "filePath", "ProcessCommandLine": "cs1", "SHA256": "fileHash", "RemoteIP": "dst",
    "RemotePort": "dpt", "LocalIP": "src", "LocalPort": "spt", "ActionType": "act",
    "InitiatingProcessFileName": "sproc", "ProcessId": "spid", "Protocol": "proto", "RemoteUrl": "request",
}
_LEEF_KEYS = {
    "DeviceName": "identHostName", "AccountName": "usrName", "RemoteIP": "dst", "RemotePort": "dstPort",
    "LocalIP": "src", "LocalPort": "srcPort", "Protocol": "proto", "FileName": "fileName", "SHA256": "fileHash",
}
_SEVERITY = {"Informational": 1, "Low": 3, "Medium": 6, "High": 8, "Critical": 10}


def _cef_header(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _cef_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def cef(record: Record, version: str = "") -> str:
    """``CEF:0|Vigil|Vigil|<version>|<category>|<title or action>|<severity>|<extension>``."""
    p = record.properties
    alert = record.table == ALERTS
    name = str(p.get("Title") if alert else p.get("ActionType") or record.table)
    severity = _SEVERITY.get(str(p.get("Severity")), 5) if alert else 3
    ext = [f"rt={_cef_value(record.time)}", f"externalId={_cef_value(record.record_id)}", f"cat={record.category}"]
    extra = {}
    for col, value in p.items():
        if value is None or col == "Timestamp":
            continue
        key = _CEF_KEYS.get(col)
        if key:
            ext.append(f"{key}={_cef_value(value)}")
        else:
            extra[col] = value
    if extra:
        ext.append(f"cs2Label=properties cs2={_cef_value(extra)}")
    if "cs1=" in " ".join(ext):
        ext.append("cs1Label=ProcessCommandLine")
    header = "|".join(_cef_header(x) for x in (VENDOR, PRODUCT, version or "0", record.category, name))
    return f"CEF:0|{header}|{severity}|{' '.join(ext)}"


def _leef_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def leef(record: Record, version: str = "") -> str:
    """LEEF 2.0, tab-delimited: ``LEEF:2.0|Vigil|Vigil|<version>|<category>|x09|k=v<TAB>...``."""
    fields = [f"devTime={record.time}", f"externalId={record.record_id}"]
    for col, value in record.properties.items():
        if value is not None and col != "Timestamp":
            fields.append(f"{_LEEF_KEYS.get(col, col)}={_leef_value(value)}")
    return f"LEEF:2.0|{VENDOR}|{PRODUCT}|{version or '0'}|{record.category}|x09|" + "\t".join(fields)


PAYLOADS: dict[str, Callable[[Record, str], str]] = {"cef": cef, "leef": leef}


def rfc5424(payload: str, record: Record, hostname: str, facility: int = 10, severity: int = 6) -> bytes:
    """One syslog message (facility authpriv by default); MSGID is the table, the record id is structured data."""
    pri = facility * 8 + severity
    sd = f'[vigil@32473 recordId="{record.record_id}"]'
    return f"<{pri}>1 {record.time} {hostname or '-'} vigil - {record.table[:32]} {sd} {payload}".encode()


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 framing for TCP: the length, a space, the message; safe for payloads with newlines."""
    return str(len(message)).encode() + b" " + message


_ECS_FIELDS = {
    "DeviceName": "host.name", "DeviceId": "host.id", "AccountName": "user.name", "AccountDomain": "user.domain",
    "FileName": "file.name", "FolderPath": "file.path", "SHA256": "file.hash.sha256", "SHA1": "file.hash.sha1",
    "MD5": "file.hash.md5", "ProcessId": "process.pid", "ProcessCommandLine": "process.command_line",
    "InitiatingProcessFileName": "process.parent.name", "InitiatingProcessId": "process.parent.pid",
    "InitiatingProcessCommandLine": "process.parent.command_line", "RemoteIP": "destination.ip",
    "RemotePort": "destination.port", "LocalIP": "source.ip", "LocalPort": "source.port",
    "Protocol": "network.transport", "RemoteUrl": "url.original", "ActionType": "event.action",
    "RegistryKey": "registry.key", "RegistryValueName": "registry.value", "RegistryValueData": "registry.data.strings",
    "Title": "rule.name", "Severity": "event.severity_name",
}


def _put(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for part in path:
        doc = doc.setdefault(part, {})
    doc[last] = value


def ecs(record: Record) -> dict[str, Any]:
    """An Elastic Common Schema document; the columns ECS has no field for are kept under ``vigil``."""
    doc: dict[str, Any] = {"@timestamp": record.time, "ecs": {"version": "8.11.0"},
                           "event": {"id": record.record_id, "dataset": f"vigil.{record.table}",
                                     "kind": "alert" if record.table == ALERTS else "event", "module": "vigil"},
                           "observer": {"vendor": VENDOR, "product": PRODUCT}}
    rest: dict[str, Any] = {}
    for col, value in record.properties.items():
        if value is None or col == "Timestamp":
            continue
        target = _ECS_FIELDS.get(col)
        if target:
            _put(doc, target, value)
        else:
            rest[col] = value
    doc["vigil"] = {"table": record.table, **rest}
    return doc
