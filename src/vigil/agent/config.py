"""Agent settings, one frozen value built by the CLI (or `vigil up`) and injected everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vigil.agent.budget import BudgetLimits
from vigil.wire import MAX_BATCH_EVENTS

DEFAULT_STATE_DIR = Path("/var/lib/vigil/agent")
STATE_DIR_ENV = "VIGIL_AGENT_STATE_DIR"
LOCAL_STATE_DIR = Path("var/agent")  # `vigil up --data-dir ./var` enrolls its local agent here
# Pseudo and volatile filesystems, package caches and journals: high volume, little signal.
DEFAULT_FILE_EXCLUDES = (
    "/proc/", "/sys/", "/dev/", "/run/", "/var/log/journal/", "/var/cache/", "/var/lib/apt/lists/",
)

# Logon sources, best first: PAM's audit records, the journal, an auth log, wtmp/btmp.
LOGON_SOURCES = ("audit", "journald", "auth_log", "wtmp")
PROCESS_PROVIDERS = ("auto", "ebpf", "proc_connector")
NETWORK_PROVIDERS = ("auto", "ebpf", "audit")
AV_MODES = ("auto", "block", "audit", "passive")  # agent/antivirus.py says what each means


def default_state_dir(env: Mapping[str, str], cwd: Path | None = None) -> Path:
    """``$VIGIL_AGENT_STATE_DIR``, then ``./var/agent`` when an agent enrolled there (the one `make up` runs),
    then /var/lib/vigil/agent; the command line passes its environment in."""
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV])
    local = (cwd or Path.cwd()) / LOCAL_STATE_DIR
    if (local / "identity.json").is_file():
        return local.resolve()
    return DEFAULT_STATE_DIR


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path
    heartbeat_seconds: float = 30.0
    batch_seconds: float = 2.0
    batch_max_events: int = 2_000
    spool_max_events: int = 5_000_000
    spool_max_bytes: int = 1 << 30
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    # A batch the server answers with 5xx this many times in a row, while its heartbeats succeed, is held
    # (set aside in the spool) so the batches behind it move on; `vigil agent resend-held` sends it again.
    hold_after_server_errors: int = 5
    request_timeout_seconds: float = 15.0
    shutdown_flush_seconds: float = 5.0
    device_info_seconds: float = 3600.0
    # How long an exec from the proc connector waits for its audit record (argv) before going alone.
    audit_wait_seconds: float = 0.5
    process_exit_events: bool = True
    use_audit: bool = True
    # Where process rows come from: "auto" takes eBPF when its object loads and attaches, else the
    # proc connector (+ audit); "ebpf" or "proc_connector" forces one (tests, benchmarks).
    process_provider: str = "auto"
    # The compiled process.bpf.o; None means the one `make bpf` builds next to the package.
    bpf_object_path: Path | None = None
    # Tags sent in DeviceInfo.DeviceTags (from the config file).
    device_tags: tuple[str, ...] = ()
    # Sensors not to start, by registry name (e.g. "network").
    disabled_sensors: tuple[str, ...] = ()
    # File sensor: filesystems of these paths are marked; events are reported only under them.
    file_paths: tuple[str, ...] = ("/",)
    # Never reported (prefixes); the agent's state directory and log file are always added.
    file_exclude_paths: tuple[str, ...] = DEFAULT_FILE_EXCLUDES
    # File rows wait this long before the acting process is looked up, so the process sensor has
    # had time to describe even a process that has already exited.
    file_attribution_delay_seconds: float = 0.25
    # Repeated writes by one process to one file within this window are one FileModified.
    file_modify_window_seconds: float = 5.0
    # Network fallback (no audit): how often the socket tables are compared.
    network_poll_seconds: float = 2.0
    # Where network rows come from: "auto" takes eBPF when its object loads and attaches, else
    # audit connect/accept (else socket-table polling); "ebpf" or "audit" forces one.
    network_provider: str = "auto"
    # The compiled network.bpf.o; None means the one `make bpf` builds next to the package.
    network_bpf_object_path: Path | None = None
    # Logon: the sources tried at start, in order; the first usable one is the only one read.
    logon_sources: tuple[str, ...] = LOGON_SOURCES
    # Logon fallback (no audit): authentication logs to follow, the first that exists is used.
    auth_log_paths: tuple[str, ...] = ("/var/log/auth.log", "/var/log/secure")
    # Logon's last resort: sessions from wtmp, failed logins from btmp.
    wtmp_path: Path = Path("/var/log/wtmp")
    btmp_path: Path = Path("/var/log/btmp")
    # Antivirus real-time protection ([antivirus] in the config file; docs/antivirus.md).
    av_realtime: bool = False  # opt-in until the device group's policy or the config file turns it on
    av_mode: str = "auto"
    av_marks: tuple[str, ...] = ()  # mount points to protect; empty: every local file system
    av_open_perm: bool = False  # also scan plain opens before they return (execs always are)
    av_budget_seconds: float = 0.25  # a waiting access is allowed unchecked after this (fail open, counted)
    # Software inventory (TVM): checked for changes this often, sent in full this often; the folders walked
    # for Python and npm packages, the ones pruned, the folders whose executables are read for Go build info.
    software_inventory_check_seconds: float = 60.0
    software_inventory_seconds: float = 86_400.0
    software_inventory_paths: tuple[str, ...] = ("/usr/local/lib", "/opt", "/srv", "/home", "/root")
    software_inventory_exclude: tuple[str, ...] = ("/usr/lib/python3/dist-packages", "/usr/share/nodejs")
    software_inventory_go_dirs: tuple[str, ...] = ("/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/usr/sbin")
    # Secure configuration assessment (TVM): the checks run this often (sent when a result changed, and in full
    # every software_inventory_seconds), on this root folder (a fixture tree in tests).
    secure_configuration_seconds: float = 3_600.0
    secure_configuration_root: str = "/"
    budget: BudgetLimits = field(default_factory=BudgetLimits)
    log_file: Path | None = None
    log_max_bytes: int = 10 << 20
    log_backups: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.batch_max_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_max_events must be between 1 and {MAX_BATCH_EVENTS}")
        for name in ("heartbeat_seconds", "batch_seconds", "backoff_initial_seconds", "request_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.hold_after_server_errors < 1:
            raise ValueError("hold_after_server_errors must be at least 1")
        if self.spool_max_events < self.batch_max_events:
            raise ValueError("spool_max_events must hold at least one batch")
        if self.process_provider not in PROCESS_PROVIDERS:
            raise ValueError(f"process_provider must be one of {', '.join(PROCESS_PROVIDERS)},"
                             f" not {self.process_provider!r}")
        if self.network_provider not in NETWORK_PROVIDERS:
            raise ValueError(f"network_provider must be one of {', '.join(NETWORK_PROVIDERS)},"
                             f" not {self.network_provider!r}")
        if not all(p.startswith("/") for p in (*self.file_paths, *self.file_exclude_paths)):
            raise ValueError("file_paths and file_exclude_paths must be absolute")
        if self.av_mode not in AV_MODES:
            raise ValueError(f"av_mode must be one of {', '.join(AV_MODES)}, not {self.av_mode!r}")
        if not 0 < self.av_budget_seconds <= 10:
            raise ValueError("av_budget_seconds must be between 0 and 10")
        unknown = [s for s in self.logon_sources if s not in LOGON_SOURCES]
        if unknown or not self.logon_sources or len(set(self.logon_sources)) != len(self.logon_sources):
            raise ValueError(f"logon_sources must name each of {', '.join(LOGON_SOURCES)} at most once, in the "
                             f"order to try them; got {list(self.logon_sources)}")

    def own_paths(self) -> tuple[str, ...]:
        """Where the agent writes; the file sensor never reports these (it would report itself)."""
        own = [str(self.state_dir.resolve()) + "/"]
        if self.log_file is not None:
            own.append(str(self.log_file.resolve()))  # a prefix: also its rotated copies
        return tuple(own)
