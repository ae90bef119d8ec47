"""The telemetry schema, declared once: it generates the tables, the batch validator and the docs.

Table and column names follow Defender's advanced-hunting schema so that hunting habits carry over.
Only the columns Vigil fills are declared; anything else an event has goes in ``AdditionalFields``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class ColumnType(StrEnum):
    STRING = "string"
    INT = "int"
    LONG = "long"
    BOOL = "bool"
    DATETIME = "datetime"
    DYNAMIC = "dynamic"  # JSON object or array, as Defender's `dynamic`
    REAL = "real"  # Defender's `real`; only the vulnerability tables (core/tvm_schema.py) have such columns


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    doc: str
    required: bool = False
    indexed: bool = False
    max_length: int | None = None  # strings: None means MAX_STRING
    minimum: int | None = None  # integers: None means the type's own range
    maximum: int | None = None


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
    Column("DeviceId", S, "Vigil device id of the reporting device.", required=True, indexed=True, max_length=40),
    Column("DeviceName", S, "Fully qualified host name of the device.", max_length=255),
    Column("ActionType", S, "Kind of event; see the table's action types.", required=True),
    Column("ReportId", L, "Event id, unique per device (the agent's spool sequence; 0 for rows the server makes).",
           required=True, minimum=0),
)

_INITIATING = (
    Column("InitiatingProcessId", L, "PID of the process that caused the event.", minimum=0),
    Column("InitiatingProcessFileName", S, "File name of the initiating process's executable."),
    Column("InitiatingProcessFolderPath", S, "Full path of the initiating process's executable."),
    Column("InitiatingProcessCommandLine", S, "Command line of the initiating process."),
    Column("InitiatingProcessSHA256", S, "SHA-256 of the initiating process's executable."),
    Column("InitiatingProcessCreationTime", T, "When the initiating process started."),
    Column("InitiatingProcessAccountName", S, "User name the initiating process ran as."),
    Column("InitiatingProcessPosixUserId", L, "Numeric user id the initiating process ran as."),
    Column("InitiatingProcessParentId", L, "PID of the initiating process's parent.", minimum=0),
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
        Column("ProcessId", L, "PID of the new process.", minimum=0),
        Column("ProcessCommandLine", S, "Full command line of the new process."),
        Column("ProcessCreationTime", T, "When the process started."),
        Column("AccountName", S, "User name the process runs as."),
        Column("AccountDomain", S, "Domain of the account (the host name for local accounts)."),
        Column("ProcessPosixUserId", L, "Numeric user id the process runs as."),
        Column("ProcessCurrentWorkingDirectory", S, "Working directory of the process."),
        Column("ProcessGroupId", L, "Process group of the new process (with job control, a pipeline's first member's"
               " PID).", minimum=0),
        Column("ProcessStdin", S, "What the process's stdin is: kind:identity, e.g. pipe:41237, tty:/dev/pts/3,"
               " socket:5521, file:inode, null, none.", max_length=300),
        Column("ProcessStdout", S, "What the process's stdout is, as ProcessStdin.", max_length=300),
        Column("ProcessStderr", S, "What the process's stderr is, as ProcessStdin.", max_length=300),
        Column("PipelineMembers", D, "PipelineCreated rows: every process of the pipeline in order, each with"
               " ProcessId, FileName, ProcessCommandLine (null for a shell builtin), ProcessStdin and ProcessStdout."),
        *_INITIATING,
        _ADDITIONAL,
    ),
    # PipelineCreated: the members of one typed pipeline joined by the agent (same parent and process group,
    # connected pipes), with the whole pipeline as ProcessCommandLine (docs/linux-detection.md, "Pipelines").
    ("ProcessCreated", "ProcessTerminated", "PipelineCreated"),
)

DEVICE_FILE_EVENTS = Table(
    "DeviceFileEvents",
    "File creation, modification, rename and deletion, with the acting process.",
    (
        *_COMMON,
        Column("FileName", S, "Name of the file."),
        Column("FolderPath", S, "Full path of the file."),
        Column("SHA256", S, "SHA-256 of the file, when computed."),
        Column("FileSize", L, "Size of the file in bytes.", minimum=0),
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
        Column("RemotePort", I, "Port of the remote end.", minimum=0, maximum=65_535),
        Column("RemoteUrl", S, "Host name of the remote end, when known."),
        Column("LocalIP", S, "Local address."),
        Column("LocalPort", I, "Local port.", minimum=0, maximum=65_535),
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
        Column("RemotePort", I, "Port the logon came from.", minimum=0, maximum=65_535),
        Column("FailureReason", S, "Why a logon failed."),
        Column("IsLocalAdmin", B, "Whether the account is a local administrator (root or sudo group)."),
        *_INITIATING,
        _ADDITIONAL,
    ),
    ("LogonSuccess", "LogonFailed", "LogonAttempted"),
)

# ASR decisions (agent.protection): Asr<Rule><Outcome> for every rule of vigil.asr's catalogue (a test keeps the two
# lists equal). Terminated: killed after the exec, which was not denied; TerminationFailed: it could not be;
# WarnOverridden: a Warn override granted on the device (`vigil agent asr-override`), audited by the server.
ASR_RULE_NAMES = ("OfficePdfChildShell", "BrowserChildShell", "ExecFromTempOrRemovable", "ServerChildShell",
                  "CredentialStoreRead", "DownloadPipedToShell", "PersistenceWrite", "KernelModuleLoad",
                  "ProcessMemoryAccess")
ASR_ACTION_TYPES = tuple(f"Asr{rule}{outcome}" for rule in ASR_RULE_NAMES
                         for outcome in ("Audited", "Blocked", "Warned", "Terminated", "TerminationFailed",
                                         "WarnOverridden"))

DEVICE_EVENTS = Table(
    "DeviceEvents",
    "Other security events: agent health, antivirus, ASR and the like; details in AdditionalFields.",
    (
        *_COMMON,
        Column("FileName", S, "Name of the file involved."),
        Column("FolderPath", S, "Full path of the file involved."),
        Column("SHA256", S, "SHA-256 of the file involved."),
        Column("ProcessId", L, "PID of the process involved.", minimum=0),
        Column("ProcessCommandLine", S, "Command line of the process involved."),
        Column("AccountName", S, "Account involved."),
        Column("RemoteIP", S, "Remote address involved."),
        Column("RemotePort", I, "Remote port involved.", minimum=0, maximum=65_535),
        *_INITIATING,
        _ADDITIONAL,
    ),
    ("AgentStarted", "AgentStopped", "SensorHealth", "EventsDropped", "ResponseActionSucceeded",
     "ResponseActionFailed", "ResponseActionRefused", "AntivirusDetection", "AntivirusScanCompleted",
     "TelemetryRowsRejected",  # made by the server: rows of a batch it refused, counts in AdditionalFields
     "SoftwareInventory",  # the installed software as package URLs (agent.sensors.software_inventory)
     "SecureConfigurationAssessment",  # the TVM configuration checks' results (agent.sensors.secure_configuration)
     *ASR_ACTION_TYPES, "ExploitGuardNetworkProtectionBlocked", "ExploitGuardNetworkProtectionAudited",
     "FileIndicatorBlocked", "FileIndicatorAudited"),  # file-hash indicators on the exec gate
)

DEVICE_INFO = Table(
    "DeviceInfo",
    "Device properties, reported when the agent starts and every hour.",
    (
        *_COMMON,
        # Lengths as in the device record, which these columns update (store/schema.py `devices`).
        Column("ClientVersion", S, "Version of the Vigil agent.", max_length=32),
        Column("PublicIP", S, "Address the server saw the device connect from, when known.", max_length=64),
        Column("OSArchitecture", S, "Processor architecture, e.g. x86_64.", max_length=32),
        Column("OSPlatform", S, "Linux, Windows, macOS.", max_length=32),
        Column("OSDistribution", S, "Distribution id, e.g. debian.", max_length=128),
        Column("OSVersion", S, "Distribution version, e.g. 12.", max_length=128),
        Column("OSBuild", S, "Kernel release.", max_length=128),
        Column("IPAddresses", D, "Addresses of the device's interfaces (JSON array)."),
        Column("LoggedOnUsers", D, "Users logged on (JSON array)."),
        Column("MachineGroup", S, "Device group of the device.", max_length=128),
        Column("DeviceTags", D, "Tags set on the device (JSON array)."),
        _ADDITIONAL,
    ),
    ("DeviceInfo",),
)

# The services whose messages the system-log sensor tells apart, by the program that logged them (journald's
# SYSLOG_IDENTIFIER or the syslog tag): each is an action type, so that Sigma's `service: sshd` rules look at
# sshd's messages alone. SystemLogMessage: any other program.
SYSTEM_LOG_ACTION_TYPES = ("SshdMessage", "CronMessage", "SudoMessage", "SuMessage", "AuthMessage",
                           "VsftpdMessage", "ClamavMessage", "GuacamoleMessage", "SystemLogMessage")

DEVICE_SYSTEM_LOG_EVENTS = Table(
    "DeviceSystemLogEvents",
    "System log messages (journald or syslog files) of the services SigmaHQ's Linux log rules read.",
    (
        *_COMMON,
        Column("ProcessName", S, "Program that logged the message (journald's SYSLOG_IDENTIFIER, syslog's tag)."),
        Column("ProcessId", L, "PID of the program that logged the message.", minimum=0),
        Column("Facility", S, "Syslog facility: auth, authpriv, cron, daemon, kern, user, ..."),
        Column("SeverityLevel", S, "Syslog severity: emerg, alert, crit, err, warning, notice, info, debug."),
        Column("SystemdUnit", S, "Systemd unit the program ran in (journald only)."),
        Column("SyslogMessage", S, "The message text."),
        _ADDITIONAL,
    ),
    SYSTEM_LOG_ACTION_TYPES,
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
        DEVICE_SYSTEM_LOG_EVENTS,
    )
}


class SchemaError(ValueError):
    """An event does not fit the declared schema; ``where`` names the offending field."""

    def __init__(self, where: str, problem: str, column: str | None = None) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem
        self.column = column


# Limits on what one batch may hold. They bound the work and memory a body costs the server, and keep
# every accepted value storable on both databases (no NUL in PostgreSQL text, no year outside 1..9999).
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
# Later than the server's clock by more than this is a broken clock, or a row retention would never delete.
MAX_FUTURE = timedelta(days=1)
MAX_STRING = 32_768  # longest accepted string value; longer command lines are a sign of abuse
MAX_TIMESTAMP_TEXT = 64
MAX_DYNAMIC_DEPTH = 32  # nested objects/arrays in a dynamic value (the value itself is level 1)
MAX_DYNAMIC_CHARS = 65_536  # a dynamic value's JSON text


def timestamp_window(now: datetime | None) -> tuple[datetime, datetime]:
    """The accepted range of every timestamp column; without ``now`` (offline tools) no upper bound."""
    latest = datetime.max.replace(tzinfo=UTC) if now is None else now.astimezone(UTC) + MAX_FUTURE
    return EARLIEST_TIMESTAMP, latest


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp; naive values are taken as UTC.

    Raises ValueError, also where the conversion to UTC leaves the years datetime can hold
    (``0001-01-01T00:00:00+05:00``)."""
    ts = datetime.fromisoformat(value)
    try:
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is outside the years a timestamp can hold in UTC") from None


def nesting_within(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """True when no object or array in ``value`` is nested more than ``limit`` levels deep.

    Iterative, so a value nested a thousand deep costs a loop, not Python's recursion limit."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            return False
        for child in v.values() if type(v) is dict else v:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return True


# Built once: json.dumps with options constructs a new encoder on every call.
_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _string_checker(limit: int) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not isinstance(v, str):
            raise TypeError("expected a string")
        if len(v) > limit:
            raise TypeError(f"longer than {limit} characters")
        if "\x00" in v:
            raise TypeError("contains a NUL character")
        return v

    return check


_INT_RANGE = {ColumnType.INT: (-(2**31), 2**31 - 1), ColumnType.LONG: (-(2**63), 2**63 - 1)}


def _int_range(column: Column) -> tuple[int, int]:
    low, high = _INT_RANGE[column.type]
    return (low if column.minimum is None else column.minimum, high if column.maximum is None else column.maximum)


def _int_checker(column: Column) -> Callable[[Any], Any]:
    low, high = _int_range(column)

    def check(v: Any) -> Any:
        if type(v) is not int:
            raise TypeError(f"expected an integer ({column.type})")
        if not low <= v <= high:
            raise TypeError(f"{v} is outside {low}..{high}")
        return v

    return check


def _check_bool(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    raise TypeError("expected true or false")


def _check_datetime(v: Any) -> Any:
    if not isinstance(v, str):
        raise TypeError("expected an ISO 8601 timestamp string")
    if len(v) > MAX_TIMESTAMP_TEXT:
        raise TypeError(f"longer than {MAX_TIMESTAMP_TEXT} characters for a timestamp")
    try:
        ts = datetime.fromisoformat(v)
    except ValueError:
        raise TypeError(f"not an ISO 8601 timestamp: {v[:40]!r}") from None
    try:
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00: before the first year datetime holds, in UTC
        raise TypeError(f"{v!r} is outside the accepted window") from None


def _check_dynamic(v: Any) -> Any:
    if not isinstance(v, dict | list):
        raise TypeError("expected a JSON object or array")
    if not nesting_within(v, MAX_DYNAMIC_DEPTH):
        raise TypeError(f"nested deeper than {MAX_DYNAMIC_DEPTH} levels")
    try:
        text = _encode_json(v)
    except ValueError:
        raise TypeError("holds a value JSON cannot represent") from None
    if len(text) > MAX_DYNAMIC_CHARS:
        raise TypeError(f"longer than {MAX_DYNAMIC_CHARS} characters as JSON")
    return text


def _checker(column: Column) -> Callable[[Any], Any]:
    kind = column.type
    if kind is ColumnType.STRING:
        return _string_checker(column.max_length or MAX_STRING)
    if kind in (ColumnType.INT, ColumnType.LONG):
        return _int_checker(column)
    return {ColumnType.BOOL: _check_bool, ColumnType.DATETIME: _check_datetime,
            ColumnType.DYNAMIC: _check_dynamic, ColumnType.REAL: _check_real}[kind]


def _check_real(v: Any) -> Any:
    if type(v) not in (int, float) or v != v or v in (float("inf"), float("-inf")):
        raise TypeError("not a finite number")
    return float(v)


class RowValidator:
    """Checks and normalizes one table's rows; built once per table, used on the hot ingest path.

    ``accept`` is the hot path: it checks columns grouped by type with no per-value calls and
    gives up (returns None) on anything unusual. ``validate`` is the exact path that names the
    first bad field; it runs only for rows the hot path gave up on, so both agree on every row.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._checkers = {c.name: _checker(c) for c in table.columns}
        self._required = tuple(c.name for c in table.columns if c.required)
        self._actions = frozenset(table.action_types)
        self._allowed = frozenset(["table", *table.column_names])
        by_type = {kind: tuple(c.name for c in table.columns if c.type == kind) for kind in ColumnType}
        self._strings = tuple(
            (c.name, c.max_length or MAX_STRING) for c in table.columns if c.type == ColumnType.STRING
        )
        self._times = by_type[ColumnType.DATETIME]
        self._ints = tuple(
            (c.name, *_int_range(c)) for c in table.columns if c.type in (ColumnType.INT, ColumnType.LONG)
        )
        self._bools = by_type[ColumnType.BOOL]
        self._dynamics = by_type[ColumnType.DYNAMIC]

    def accept(self, row: Mapping[str, Any], earliest: datetime, latest: datetime) -> dict[str, Any] | None:
        """The normalized row if it is valid, else None (``validate`` then says why)."""
        if not self._allowed.issuperset(row):
            return None
        out = dict(row)
        out.pop("table", None)
        get = out.get
        for name, limit in self._strings:
            v = get(name)
            if v is not None and (type(v) is not str or len(v) > limit or "\x00" in v):
                return None
        for name, low, high in self._ints:
            v = get(name)
            if v is not None and (type(v) is not int or not low <= v <= high):
                return None
        for name in self._times:
            v = get(name)
            if v is None:
                continue
            if type(v) is not str or len(v) > MAX_TIMESTAMP_TEXT:
                return None
            try:
                ts = datetime.fromisoformat(v)
                tz = ts.tzinfo
                ts = ts.replace(tzinfo=UTC) if tz is None else ts if tz is UTC else ts.astimezone(UTC)
            except (ValueError, OverflowError):
                return None
            if not earliest <= ts <= latest:
                return None
            out[name] = ts
        for name in self._bools:
            v = get(name)
            if v is not None and type(v) is not bool:
                return None
        for name in self._dynamics:
            v = get(name)
            if v is None:
                continue
            if (type(v) is not dict and type(v) is not list) or not nesting_within(v, MAX_DYNAMIC_DEPTH):
                return None
            try:
                text = _encode_json(v)
            except (ValueError, TypeError):
                return None
            if len(text) > MAX_DYNAMIC_CHARS:
                return None
            out[name] = text
        for name in self._required:
            if get(name) is None:
                return None
        if self._actions and out["ActionType"] not in self._actions:
            return None
        return out

    def validate(self, row: Mapping[str, Any], where: str, earliest: datetime, latest: datetime) -> dict[str, Any]:
        checkers = self._checkers
        out: dict[str, Any] = {}
        for name, value in row.items():
            if name == "table":
                continue
            check = checkers.get(name)
            if check is None:
                raise SchemaError(f"{where}.{name[:64]}", f"unknown column of {self.table.name}", name[:64])
            if value is None:
                out[name] = None
                continue
            try:
                out[name] = check(value)
            except TypeError as e:
                raise SchemaError(f"{where}.{name}", str(e), name) from None
            if type(out[name]) is datetime and not earliest <= out[name] <= latest:
                raise SchemaError(f"{where}.{name}", f"{value[:40]!r} is outside the accepted window"
                                  f" {earliest:%Y-%m-%d} .. the server's time + {MAX_FUTURE.days} day", name)
        for name in self._required:
            if out.get(name) is None:
                raise SchemaError(f"{where}.{name}", "required column is missing", name)
        if self._actions and out["ActionType"] not in self._actions:
            raise SchemaError(
                f"{where}.ActionType",
                f"{str(out['ActionType'])[:64]!r} is not one of {', '.join(sorted(self._actions))}",
                "ActionType",
            )
        return out


VALIDATORS: Mapping[str, RowValidator] = {name: RowValidator(t) for name, t in TABLES.items()}


@dataclass(frozen=True)
class RejectedRow:
    """One row of a batch that was not stored, and why."""

    index: int  # position in the batch's events
    table: str | None  # None when the row names no known table
    field: str | None  # the offending column, "table", or None for the row as a whole
    reason: str

    @property
    def where(self) -> str:
        return f"events[{self.index}]" + (f".{self.field}" if self.field else "")


@dataclass(frozen=True)
class ValidatedBatch:
    """A batch's valid rows grouped by table, and the rows it rejected."""

    rows: dict[str, list[dict[str, Any]]]
    rejected: tuple[RejectedRow, ...]

    @property
    def accepted(self) -> int:
        return sum(map(len, self.rows.values()))


def validate_batch(events: Iterable[Any], device_id: str, now: datetime | None) -> ValidatedBatch:
    """Validate every row of a batch: the good ones grouped by table, the bad ones each with its first fault.

    Every row must belong to ``device_id``: an agent may only report for itself. Timestamps must lie
    in ``timestamp_window(now)``.
    """
    earliest, latest = timestamp_window(now)
    by_table: dict[str, list[dict[str, Any]]] = {}
    rejected: list[RejectedRow] = []
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            rejected.append(RejectedRow(i, None, None, "expected a JSON object"))
            continue
        table = event.get("table")
        validator = VALIDATORS.get(table) if isinstance(table, str) else None
        if validator is None:
            rejected.append(RejectedRow(i, None, "table", f"unknown table {str(table)[:64]!r}"))
            continue
        name = validator.table.name
        row = validator.accept(event, earliest, latest)
        if row is None:
            try:
                row = validator.validate(event, f"events[{i}]", earliest, latest)
            except SchemaError as e:
                rejected.append(RejectedRow(i, name, e.column, e.problem))
                continue
        if row["DeviceId"] != device_id:
            rejected.append(RejectedRow(i, name, "DeviceId", "events may only be reported for the sending device"))
            continue
        by_table.setdefault(name, []).append(row)
    return ValidatedBatch(by_table, tuple(rejected))


def validate_events(
    events: Iterable[Any], device_id: str, now: datetime | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Validate a whole batch; returns rows grouped by table or raises on the first bad field."""
    batch = validate_batch(events, device_id, now)
    if batch.rejected:
        first = batch.rejected[0]
        raise SchemaError(first.where, first.reason, first.field)
    return batch.rows


def _limits_text(c: Column) -> str:
    if c.type is ColumnType.STRING and c.max_length is not None:
        return f" At most {c.max_length} characters."
    if c.type in (ColumnType.INT, ColumnType.LONG) and (c.minimum is not None or c.maximum is not None):
        low, high = _int_range(c)
        return f" At least {low}." if c.maximum is None else f" {low} to {high}."
    return ""


def schema_markdown() -> str:
    """The telemetry schema reference, generated from the declarations above."""
    lines = [
        "# Telemetry schema",
        "",
        "Generated from `vigil.core.telemetry` by `vigil docs schema`; do not edit by hand.",
        "Names follow Defender's advanced-hunting schema.",
        "",
        "Limits on every row an agent sends (a row outside them is rejected, the rest of its batch stored):",
        f"timestamps from {EARLIEST_TIMESTAMP:%Y-%m-%d} to the server's time + {MAX_FUTURE.days} day;"
        f" strings at most {MAX_STRING} characters unless a column says less, without NUL characters;"
        f" dynamic values nested at most {MAX_DYNAMIC_DEPTH} levels and at most {MAX_DYNAMIC_CHARS}"
        " characters as JSON.",
        "",
    ]
    for t in TABLES.values():
        lines += [f"## {t.name}", "", t.doc, ""]
        if t.action_types:
            lines += ["Action types: " + ", ".join(f"`{a}`" for a in t.action_types), ""]
        lines += ["| Column | Type | Description |", "|---|---|---|"]
        for c in t.columns:
            req = " Required." if c.required else ""
            lines.append(f"| `{c.name}` | {c.type} | {c.doc}{req}{_limits_text(c)} |")
        lines.append("")
    return "\n".join(lines)
