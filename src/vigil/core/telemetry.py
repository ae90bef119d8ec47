"""The telemetry schema, declared once: it generates the tables, the batch validator and the docs.

Table and column names follow Defender's advanced-hunting schema so that hunting habits carry over.
Only the columns Vigil fills are declared; anything else an event has goes in ``AdditionalFields``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class ColumnType(StrEnum):
    STRING = "string"
    INT = "int"
    LONG = "long"
    BOOL = "bool"
    DATETIME = "datetime"
    DYNAMIC = "dynamic"  # JSON object or array, as Defender's `dynamic`


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    doc: str
    required: bool = False
    indexed: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[Column, ...]
    action_types: tuple[str, ...] = ()

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


S, I, L, B, T, D = (
    ColumnType.STRING,
    ColumnType.INT,
    ColumnType.LONG,
    ColumnType.BOOL,
    ColumnType.DATETIME,
    ColumnType.DYNAMIC,
)

_COMMON = (
    Column("Timestamp", T, "When the event happened on the device (UTC).", required=True, indexed=True),
    Column("DeviceId", S, "Vigil device id of the reporting device.", required=True, indexed=True),
    Column("DeviceName", S, "Fully qualified host name of the device."),
    Column("ActionType", S, "Kind of event; see the table's action types.", required=True),
    Column("ReportId", L, "Event id, unique per device (the agent's spool sequence).", required=True),
)

_INITIATING = (
    Column("InitiatingProcessId", L, "PID of the process that caused the event."),
    Column("InitiatingProcessFileName", S, "File name of the initiating process's executable."),
    Column("InitiatingProcessFolderPath", S, "Full path of the initiating process's executable."),
    Column("InitiatingProcessCommandLine", S, "Command line of the initiating process."),
    Column("InitiatingProcessSHA256", S, "SHA-256 of the initiating process's executable."),
    Column("InitiatingProcessCreationTime", T, "When the initiating process started."),
    Column("InitiatingProcessAccountName", S, "User name the initiating process ran as."),
    Column("InitiatingProcessPosixUserId", L, "Numeric user id the initiating process ran as."),
    Column("InitiatingProcessParentId", L, "PID of the initiating process's parent."),
    Column("InitiatingProcessParentFileName", S, "File name of the initiating process's parent."),
)

_ADDITIONAL = Column("AdditionalFields", D, "Extra event data as a JSON object.")

DEVICE_PROCESS_EVENTS = Table(
    "DeviceProcessEvents",
    "Process creation and exit. The InitiatingProcess* columns describe the parent.",
    (
        *_COMMON,
        Column("FileName", S, "File name of the new process's executable.", indexed=False),
        Column("FolderPath", S, "Full path of the new process's executable."),
        Column("SHA256", S, "SHA-256 of the executable (cached by device, inode, size and mtime)."),
        Column("ProcessId", L, "PID of the new process."),
        Column("ProcessCommandLine", S, "Full command line of the new process."),
        Column("ProcessCreationTime", T, "When the process started."),
        Column("AccountName", S, "User name the process runs as."),
        Column("AccountDomain", S, "Domain of the account (the host name for local accounts)."),
        Column("ProcessPosixUserId", L, "Numeric user id the process runs as."),
        Column("ProcessCurrentWorkingDirectory", S, "Working directory of the process."),
        *_INITIATING,
        _ADDITIONAL,
    ),
    ("ProcessCreated", "ProcessTerminated"),
)

DEVICE_FILE_EVENTS = Table(
    "DeviceFileEvents",
    "File creation, modification, rename and deletion, with the acting process.",
    (
        *_COMMON,
        Column("FileName", S, "Name of the file."),
        Column("FolderPath", S, "Full path of the file."),
        Column("SHA256", S, "SHA-256 of the file, when computed."),
        Column("FileSize", L, "Size of the file in bytes."),
        Column("PreviousFileName", S, "Name before a rename."),
        Column("PreviousFolderPath", S, "Full path before a rename."),
        *_INITIATING,
        _ADDITIONAL,
    ),
    ("FileCreated", "FileModified", "FileDeleted", "FileRenamed"),
)

DEVICE_NETWORK_EVENTS = Table(
    "DeviceNetworkEvents",
    "Network connections with the process that made or accepted them.",
    (
        *_COMMON,
        Column("RemoteIP", S, "Address of the remote end."),
        Column("RemotePort", I, "Port of the remote end."),
        Column("RemoteUrl", S, "Host name of the remote end, when known."),
        Column("LocalIP", S, "Local address."),
        Column("LocalPort", I, "Local port."),
        Column("Protocol", S, "Tcp or Udp."),
        Column("LocalIPType", S, "Public, Private, Reserved, Loopback, Teredo, FourToSixMapping, Broadcast."),
        Column("RemoteIPType", S, "Public, Private, Reserved, Loopback, Teredo, FourToSixMapping, Broadcast."),
        *_INITIATING,
        _ADDITIONAL,
    ),
    (
        "ConnectionSuccess",
        "ConnectionAttempt",
        "ConnectionFailed",
        "InboundConnectionAccepted",
        "ListeningConnectionCreated",
    ),
)

DEVICE_LOGON_EVENTS = Table(
    "DeviceLogonEvents",
    "Sign-ins and failed sign-ins.",
    (
        *_COMMON,
        Column("AccountName", S, "User name of the account."),
        Column("AccountDomain", S, "Domain of the account."),
        Column("LogonType", S, "Interactive, RemoteInteractive, Network, Batch or Service."),
        Column("RemoteDeviceName", S, "Name of the remote device, when known."),
        Column("RemoteIP", S, "Address the logon came from."),
        Column("RemoteIPType", S, "Type of RemoteIP."),
        Column("RemotePort", I, "Port the logon came from."),
        Column("FailureReason", S, "Why a logon failed."),
        Column("IsLocalAdmin", B, "Whether the account is a local administrator (root or sudo group)."),
        *_INITIATING,
        _ADDITIONAL,
    ),
    ("LogonSuccess", "LogonFailed", "LogonAttempted"),
)

DEVICE_EVENTS = Table(
    "DeviceEvents",
    "Other security events: agent health, antivirus, ASR and the like; details in AdditionalFields.",
    (
        *_COMMON,
        Column("FileName", S, "Name of the file involved."),
        Column("FolderPath", S, "Full path of the file involved."),
        Column("SHA256", S, "SHA-256 of the file involved."),
        Column("ProcessId", L, "PID of the process involved."),
        Column("ProcessCommandLine", S, "Command line of the process involved."),
        Column("AccountName", S, "Account involved."),
        Column("RemoteIP", S, "Remote address involved."),
        Column("RemotePort", I, "Remote port involved."),
        *_INITIATING,
        _ADDITIONAL,
    ),
    ("AgentStarted", "AgentStopped", "SensorHealth", "EventsDropped", "ResponseActionSucceeded",
     "ResponseActionFailed", "ResponseActionRefused"),
)

DEVICE_INFO = Table(
    "DeviceInfo",
    "Device properties, reported when the agent starts and every hour.",
    (
        *_COMMON,
        Column("ClientVersion", S, "Version of the Vigil agent."),
        Column("PublicIP", S, "Address the server saw the device connect from, when known."),
        Column("OSArchitecture", S, "Processor architecture, e.g. x86_64."),
        Column("OSPlatform", S, "Linux, Windows, macOS."),
        Column("OSDistribution", S, "Distribution id, e.g. debian."),
        Column("OSVersion", S, "Distribution version, e.g. 12."),
        Column("OSBuild", S, "Kernel release."),
        Column("IPAddresses", D, "Addresses of the device's interfaces (JSON array)."),
        Column("LoggedOnUsers", D, "Users logged on (JSON array)."),
        Column("MachineGroup", S, "Device group of the device."),
        Column("DeviceTags", D, "Tags set on the device (JSON array)."),
        _ADDITIONAL,
    ),
    ("DeviceInfo",),
)

TABLES: Mapping[str, Table] = {
    t.name: t
    for t in (
        DEVICE_PROCESS_EVENTS,
        DEVICE_FILE_EVENTS,
        DEVICE_NETWORK_EVENTS,
        DEVICE_LOGON_EVENTS,
        DEVICE_EVENTS,
        DEVICE_INFO,
    )
}


class SchemaError(ValueError):
    """An event does not fit the declared schema; ``where`` names the offending field."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp; naive values are taken as UTC."""
    ts = datetime.fromisoformat(value)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _check_string(v: Any) -> Any:
    if isinstance(v, str):
        return v
    raise TypeError("expected a string")


_INT_MAX = {ColumnType.INT: 2**31, ColumnType.LONG: 2**63}


def _int_checker(kind: ColumnType) -> Callable[[Any], Any]:
    bound = _INT_MAX[kind]

    def check(v: Any) -> Any:
        if type(v) is int and -bound <= v < bound:
            return v
        raise TypeError(f"expected an integer ({kind})")

    return check


def _check_bool(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    raise TypeError("expected true or false")


def _check_datetime(v: Any) -> Any:
    if not isinstance(v, str):
        raise TypeError("expected an ISO 8601 timestamp string")
    try:
        return parse_timestamp(v)
    except ValueError:
        raise TypeError(f"not an ISO 8601 timestamp: {v[:40]!r}") from None


# Built once: json.dumps with options constructs a new encoder on every call.
_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _check_dynamic(v: Any) -> Any:
    if isinstance(v, dict | list):
        try:
            return _encode_json(v)
        except ValueError:
            raise TypeError("holds a value JSON cannot represent") from None
    raise TypeError("expected a JSON object or array")


_CHECKERS: dict[ColumnType, Callable[[Any], Any]] = {
    ColumnType.STRING: _check_string,
    ColumnType.INT: _int_checker(ColumnType.INT),
    ColumnType.LONG: _int_checker(ColumnType.LONG),
    ColumnType.BOOL: _check_bool,
    ColumnType.DATETIME: _check_datetime,
    ColumnType.DYNAMIC: _check_dynamic,
}

MAX_STRING = 32_768  # longest accepted string value; longer command lines are a sign of abuse


class RowValidator:
    """Checks and normalizes one table's rows; built once per table, used on the hot ingest path.

    ``accept`` is the hot path: it checks columns grouped by type with no per-value calls and
    gives up (returns None) on anything unusual. ``validate`` is the exact path that names the
    first bad field; it runs only for rows the hot path gave up on, so both agree on every row.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._checkers = {c.name: _CHECKERS[c.type] for c in table.columns}
        self._required = tuple(c.name for c in table.columns if c.required)
        self._actions = frozenset(table.action_types)
        self._allowed = frozenset(["table", *table.column_names])
        by_type = {kind: tuple(c.name for c in table.columns if c.type == kind) for kind in ColumnType}
        self._strings = by_type[ColumnType.STRING]
        self._times = by_type[ColumnType.DATETIME]
        self._ints = tuple(
            (c.name, -_INT_MAX[c.type], _INT_MAX[c.type])
            for c in table.columns
            if c.type in (ColumnType.INT, ColumnType.LONG)
        )
        self._bools = by_type[ColumnType.BOOL]
        self._dynamics = by_type[ColumnType.DYNAMIC]

    def accept(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        """The normalized row if it is valid, else None (``validate`` then says why)."""
        if not self._allowed.issuperset(row):
            return None
        out = dict(row)
        out.pop("table", None)
        get = out.get
        for name in self._strings:
            v = get(name)
            if v is not None and (type(v) is not str or len(v) > MAX_STRING):
                return None
        for name, low, high in self._ints:
            v = get(name)
            if v is not None and (type(v) is not int or not low <= v < high):
                return None
        for name in self._times:
            v = get(name)
            if v is None:
                continue
            if type(v) is not str:
                return None
            try:
                ts = datetime.fromisoformat(v)
            except ValueError:
                return None
            tz = ts.tzinfo
            out[name] = ts.replace(tzinfo=UTC) if tz is None else ts if tz is UTC else ts.astimezone(UTC)
        for name in self._bools:
            v = get(name)
            if v is not None and type(v) is not bool:
                return None
        for name in self._dynamics:
            v = get(name)
            if v is None:
                continue
            if type(v) is not dict and type(v) is not list:
                return None
            try:
                out[name] = _encode_json(v)
            except (ValueError, TypeError):
                return None
        for name in self._required:
            if get(name) is None:
                return None
        if self._actions and out["ActionType"] not in self._actions:
            return None
        return out

    def validate(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        checkers = self._checkers
        out: dict[str, Any] = {}
        for name, value in row.items():
            if name == "table":
                continue
            check = checkers.get(name)
            if check is None:
                raise SchemaError(f"{where}.{name}", f"unknown column of {self.table.name}")
            if value is None:
                out[name] = None
                continue
            try:
                out[name] = check(value)
            except TypeError as e:
                raise SchemaError(f"{where}.{name}", str(e)) from None
            if type(value) is str and len(value) > MAX_STRING:
                raise SchemaError(f"{where}.{name}", f"longer than {MAX_STRING} characters")
        for name in self._required:
            if out.get(name) is None:
                raise SchemaError(f"{where}.{name}", "required column is missing")
        if self._actions and out["ActionType"] not in self._actions:
            raise SchemaError(
                f"{where}.ActionType",
                f"{out['ActionType']!r} is not one of {', '.join(sorted(self._actions))}",
            )
        return out


VALIDATORS: Mapping[str, RowValidator] = {name: RowValidator(t) for name, t in TABLES.items()}


def validate_events(
    events: Iterable[Any], device_id: str
) -> dict[str, list[dict[str, Any]]]:
    """Validate a whole batch; returns rows grouped by table or raises on the first bad field.

    Every row must belong to ``device_id``: an agent may only report for itself.
    """
    by_table: dict[str, list[dict[str, Any]]] = {}
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            raise SchemaError(f"events[{i}]", "expected a JSON object")
        table = event.get("table")
        validator = VALIDATORS.get(table) if isinstance(table, str) else None
        if validator is None:
            raise SchemaError(f"events[{i}].table", f"unknown table {table!r}")
        row = validator.accept(event)
        if row is None:
            row = validator.validate(event, f"events[{i}]")
        if row["DeviceId"] != device_id:
            raise SchemaError(f"events[{i}].DeviceId", "events may only be reported for the sending device")
        by_table.setdefault(validator.table.name, []).append(row)
    return by_table


def schema_markdown() -> str:
    """The telemetry schema reference, generated from the declarations above."""
    lines = [
        "# Telemetry schema",
        "",
        "Generated from `vigil.core.telemetry` by `vigil docs schema`; do not edit by hand.",
        "Names follow Defender's advanced-hunting schema.",
        "",
    ]
    for t in TABLES.values():
        lines += [f"## {t.name}", "", t.doc, ""]
        if t.action_types:
            lines += ["Action types: " + ", ".join(f"`{a}`" for a in t.action_types), ""]
        lines += ["| Column | Type | Description |", "|---|---|---|"]
        for c in t.columns:
            req = " Required." if c.required else ""
            lines.append(f"| `{c.name}` | {c.type} | {c.doc}{req} |")
        lines.append("")
    return "\n".join(lines)
