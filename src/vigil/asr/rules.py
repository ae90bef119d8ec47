"""The Linux ASR rule catalogue: one registry, one entry per rule, each GUID fixed once and never changed.

Every predicate reads the columns Vigil's sensors fill today (docs/telemetry-schema.md). Where the telemetry
does not carry the event itself (file reads, ptrace, module loads), the rule reads the process that does it from
its command line; each rule's ``limits`` says what that misses.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable

from vigil.asr.model import AsrRule, Row
from vigil.core.attack import AttackTactic
from vigil.core.registry import DuplicateName, Registry, UnknownName


class DuplicateAsrRule(DuplicateName):
    pass


class UnknownAsrRule(UnknownName):
    pass


RULES: Registry[AsrRule] = Registry("ASR rule", duplicate=DuplicateAsrRule, unknown=UnknownAsrRule)

PROCESS = "DeviceProcessEvents"
FILE = "DeviceFileEvents"

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "ash", "busybox"})
_INTERPRETER = re.compile(r"^(python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|php[0-9.]*|node|nodejs|lua[0-9.]*|tclsh[0-9.]*"
                          r"|wish[0-9.]*|pwsh|osascript|expect|gawk|awk|mawk)$")
OFFICE = frozenset({"soffice", "soffice.bin", "oosplash", "libreoffice", "abiword", "gnumeric", "calligrawords",
                    "wps", "et", "wpp", "onlyoffice", "desktopeditors", "evince", "okular", "atril", "xpdf",
                    "mupdf", "zathura", "qpdfview", "acroread", "foxitreader", "xreader", "papers"})
BROWSERS = frozenset({"firefox", "firefox-esr", "firefox-bin", "chrome", "google-chrome", "chromium",
                      "chromium-browser", "brave", "brave-browser", "opera", "msedge", "microsoft-edge",
                      "vivaldi-bin", "epiphany", "falkon", "qutebrowser", "librewolf"})
WEB_SERVERS = frozenset({"nginx", "apache2", "httpd", "lighttpd", "caddy", "php-fpm", "uwsgi", "gunicorn",
                         "tomcat", "catalina.sh", "jetty", "traefik", "haproxy", "openresty"})
DATABASES = frozenset({"mysqld", "mariadbd", "postgres", "postmaster", "mongod", "redis-server", "memcached",
                       "elasticsearch", "clickhouse-server", "influxd", "couchdb", "cassandra"})
PACKAGE_MANAGERS = frozenset({"dpkg", "apt", "apt-get", "aptitude", "unattended-upgrade", "unattended-upgr",
                              "rpm", "dnf", "yum", "zypper", "pacman", "apk", "snapd", "flatpak", "packagekitd",
                              "dkms", "update-initramfs", "mkinitramfs", "dracut"})
CONFIG_MANAGERS = frozenset({"puppet", "chef-client", "salt-minion", "ansible-playbook", "cloud-init", "systemd",
                             "systemctl", "crontab", "useradd", "adduser", "ssh-copy-id", "vigil"})
EDITORS = frozenset({"vi", "vim", "vim.basic", "vim.tiny", "nvim", "nano", "emacs", "gedit", "kate", "mousepad"})
DEBUGGERS = frozenset({"gdb", "lldb", "strace", "ltrace", "perf", "valgrind", "rr", "gcore", "bpftrace"})
DOWNLOADERS = frozenset({"curl", "wget", "fetch", "aria2c", "lwp-download", "nc", "ncat", "netcat", "socat"})


def _name(value: object) -> str:
    text = str(value or "")
    return text.rsplit("/", 1)[-1]


def _php_fpm(name: str) -> str:
    return "php-fpm" if name.startswith("php-fpm") else name


def is_shell_or_interpreter(name: str) -> bool:
    return name in SHELLS or bool(_INTERPRETER.match(name))


def _created(row: Row) -> bool:
    return row.get("ActionType") == "ProcessCreated"


def _parent(row: Row) -> str:
    return _php_fpm(_name(row.get("InitiatingProcessFileName") or row.get("InitiatingProcessFolderPath")))


def _child(row: Row) -> str:
    return _name(row.get("FileName") or row.get("FolderPath"))


def _argv(row: Row) -> list[str]:
    line = str(row.get("ProcessCommandLine") or "")
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


Predicate = Callable[[Row], bool]


def rule(
    guid: str, name: str, title: str, technique: str, table: str, limits: str = "",
    tactic: AttackTactic = AttackTactic.EXECUTION,
) -> Callable[[Predicate], Predicate]:
    """Register the decorated predicate as a rule; its docstring is the description."""

    def wrap(predicate: Predicate) -> Predicate:
        entry = AsrRule(guid=guid, name=name, title=title, description=" ".join((predicate.__doc__ or "").split()),
                        technique=technique, table=table, predicate=predicate, limits=limits,
                        tactic=tactic.value)
        RULES.register(guid, entry)
        return predicate

    return wrap


@rule("1b50ad5c-03f8-4b19-949d-5e48ad91567c", "OfficePdfChildShell",
      "Block office and PDF applications from creating shells or interpreters", "T1204.002", PROCESS,
      limits="A helper the application runs first (a launcher script under another name) that then starts the shell"
             " is not seen as the office process's child.")
def office_child_shell(row: Row) -> bool:
    """A new process whose executable is a shell or script interpreter and whose parent is an office suite or
    PDF reader (LibreOffice, OnlyOffice, WPS, Evince, Okular, Atril, MuPDF, zathura...)."""
    return _created(row) and _parent(row) in OFFICE and is_shell_or_interpreter(_child(row))


@rule("d7014555-292e-4033-8b00-bce5654e588b", "BrowserChildShell",
      "Block browsers from creating shells or interpreters", "T1189", PROCESS,
      limits="xdg-open and other launchers a browser starts are not shells by name; a shell they start in turn has"
             " them, not the browser, as parent.",
      tactic=AttackTactic.INITIAL_ACCESS)
def browser_child_shell(row: Row) -> bool:
    """A new shell or script interpreter whose parent is a web browser (Firefox, Chrome, Chromium, Brave, Edge...)."""
    return _created(row) and _parent(row) in BROWSERS and is_shell_or_interpreter(_child(row))


_TEMP = ("/tmp/", "/var/tmp/", "/dev/shm/", "/media/", "/run/media/", "/mnt/")  # noqa: S108 (matched, not used)


def _in_temp(path: str) -> bool:
    return path.startswith(_TEMP)


@rule("526f17ee-978f-439f-985b-be868343db39", "ExecFromTempOrRemovable",
      "Block execution from /tmp, /var/tmp, /dev/shm and removable media", "T1204", PROCESS,
      limits="A script read on stdin (`sh < /tmp/x`) or loaded by a program from its own arguments in another form"
             " (`python -c \"exec(open('/tmp/x').read())\"`) is not matched; memfd executables are a separate case.")
def exec_from_temp(row: Row) -> bool:
    """A new process whose executable lies under /tmp, /var/tmp, /dev/shm, /media, /run/media or /mnt; or a shell or
    interpreter whose script argument (its first argument that is not an option) lies there."""
    if not _created(row):
        return False
    if _in_temp(str(row.get("FolderPath") or "")):
        return True
    if is_shell_or_interpreter(_child(row)):
        args = _argv(row)[1:]
        for arg in args:
            if arg.startswith("-"):
                if arg in ("-c", "-e", "-m"):
                    return False  # inline code or a module, not a script path
                continue
            return _in_temp(arg)
    return False


@rule("674da5a4-c8d5-47c0-829a-3fb57477bd30", "ServerChildShell",
      "Block web-server and database processes from creating shells", "T1505.003", PROCESS,
      limits="Servers that run CGI scripts through a shell by design need a per-rule process exclusion.",
      tactic=AttackTactic.PERSISTENCE)
def server_child_shell(row: Row) -> bool:
    """A new shell or script interpreter whose parent is a web server or application server (nginx, Apache, PHP-FPM,
    uWSGI, gunicorn...) or a database server (MySQL, MariaDB, PostgreSQL, MongoDB, Redis...)."""
    parent = _parent(row)
    return _created(row) and (parent in WEB_SERVERS or parent in DATABASES) and is_shell_or_interpreter(_child(row))


_CREDENTIAL = re.compile(
    r"/etc/g?shadow\b|/etc/ssh/ssh_host_\w+_key\b(?!\.pub)"
    r"|\.mozilla/firefox/[^\s'\"]*(logins\.json|key[34]\.db)"
    r"|\.config/(google-chrome|chromium|BraveSoftware/Brave-Browser|microsoft-edge|vivaldi)/[^'\"]*Login Data"
    r"|\.local/share/keyrings/")
_CREDENTIAL_OWNERS = frozenset({"passwd", "chpasswd", "chage", "unix_chkpwd", "useradd", "usermod", "userdel",
                                "pwck", "grpck", "vipw", "sshd", "ssh-keygen", "gnome-keyring-daemon",
                                *BROWSERS, *PACKAGE_MANAGERS})


@rule("5119061b-ac60-408b-956d-ba0637ff04ef", "CredentialStoreRead",
      "Block reads of /etc/shadow, SSH host keys and browser credential stores by unexpected processes",
      "T1003.008", PROCESS,
      limits="Seen from the reading process's command line: a program that opens the file without naming it on its"
             " command line is not matched until the agent's fanotify open-permission path exists (not built).",
      tactic=AttackTactic.CREDENTIAL_ACCESS)
def credential_store_read(row: Row) -> bool:
    """A new process whose command line names /etc/shadow, /etc/gshadow, an SSH host private key, Firefox's
    logins.json or key4.db, a Chromium-family "Login Data" file or the GNOME keyrings, and which is not a program
    that owns those files (passwd, chage, unix_chkpwd, sshd, ssh-keygen, the browser itself, the package manager)."""
    if not _created(row) or _child(row) in _CREDENTIAL_OWNERS:
        return False
    return bool(_CREDENTIAL.search(str(row.get("ProcessCommandLine") or "")))


_PIPE_TO_SHELL = re.compile(r"\b(curl|wget|fetch)\b[^|;&]*\|\s*(sudo\s+(-\S+\s+)*)?(\S*/)?"
                            r"((ba|da|z|k|c|tc|a)?sh|python[0-9.]*|perl|ruby|php|node)\b")


@rule("3dd63694-41fa-4803-9152-22c25c5abac6", "DownloadPipedToShell",
      "Block a download piped into a shell", "T1059.004", PROCESS,
      limits="A download saved to a file and run in a second command is the temp-execution rule's case, not this"
             " one's; a pipeline the agent did not join (its members in different process groups) is seen only"
             " through the shell's own command line.")
def download_piped_to_shell(row: Row) -> bool:
    """A pipeline (the agent's PipelineCreated row) whose members include a downloader (curl, wget, fetch, aria2c,
    nc, socat) followed later by a shell or interpreter reading its stdin; or a shell started with `-c` whose
    command is `curl ... | sh` (or wget, into bash, python, perl...)."""
    action = row.get("ActionType")
    if action == "PipelineCreated":
        members = row.get("PipelineMembers") or []
        names = [_name(m.get("FileName")) for m in members if isinstance(m, dict)]
        for i, name in enumerate(names):
            if name in DOWNLOADERS and any(is_shell_or_interpreter(n) for n in names[i + 1:]):
                return True
        return False
    if action != "ProcessCreated":
        return False
    return _child(row) in SHELLS and bool(_PIPE_TO_SHELL.search(str(row.get("ProcessCommandLine") or "")))


_PERSISTENCE = re.compile(
    r"^(/etc/cron\.(d|daily|hourly|weekly|monthly)/|/etc/crontab$|/var/spool/cron/"
    r"|/etc/systemd/(system|user)/|/(usr/)?lib/systemd/(system|user)/|/home/[^/]+/\.config/systemd/user/"
    r"|/root/\.config/systemd/user/|/etc/ld\.so\.preload$"
    r"|/(home/[^/]+|root)/\.ssh/authorized_keys2?$"
    r"|/etc/profile$|/etc/profile\.d/|/etc/bash\.bashrc$|/etc/zsh/"
    r"|/(home/[^/]+|root)/\.(bashrc|bash_profile|bash_login|profile|zshrc|zprofile|zlogin)$)")
_PERSISTENCE_WRITERS = PACKAGE_MANAGERS | CONFIG_MANAGERS | EDITORS


@rule("c0886895-0a46-4267-9663-3c2b4546d444", "PersistenceWrite",
      "Block writes to persistence locations by unusual processes", "T1053.003", FILE,
      limits="Text editors are allowed (a user editing their own profile), so `vim -c` scripted edits pass; a write"
             " through a package manager's maintainer script counts as the package manager's.",
      tactic=AttackTactic.PERSISTENCE)
def persistence_write(row: Row) -> bool:
    """A file created, modified or renamed into cron (/etc/cron.*, /etc/crontab, /var/spool/cron), systemd units
    (system and user), /etc/ld.so.preload, an authorized_keys file, or a shell profile (/etc/profile(.d),
    /etc/bash.bashrc, ~/.bashrc, ~/.profile, ~/.zshrc...), by a process that is neither a package or configuration
    manager (dpkg, apt, rpm, dnf, puppet, cloud-init, systemctl, crontab, useradd, ssh-copy-id...) nor an editor,
    and whose parent is not a package manager either."""
    if row.get("ActionType") not in ("FileCreated", "FileModified", "FileRenamed"):
        return False
    if not _PERSISTENCE.match(str(row.get("FolderPath") or "")):
        return False
    actor = _parent(row)
    grandparent = _php_fpm(_name(row.get("InitiatingProcessParentFileName")))
    return actor not in _PERSISTENCE_WRITERS and grandparent not in PACKAGE_MANAGERS


_MODULE_LOADERS = frozenset({"insmod", "modprobe"})
_MODULE_PARENTS = PACKAGE_MANAGERS | frozenset({"systemd-modules-load", "systemd-udevd", "udevadm", "kmod",
                                                "kthreadd", "modprobe", "systemd"})


@rule("944a5369-1659-4897-a610-3b6edb9ba692", "KernelModuleLoad",
      "Block kernel module loads outside package management", "T1547.006", PROCESS,
      limits="A program calling init_module/finit_module itself (not through insmod or modprobe) is not seen until"
             " module-load telemetry exists; the kernel's own modprobe requests (no parent, or kthreadd) pass.",
      tactic=AttackTactic.PERSISTENCE)
def kernel_module_load(row: Row) -> bool:
    """insmod, or modprobe without -r/--remove, started by anything but a package manager, DKMS, initramfs tools,
    systemd-modules-load, udev or the kernel itself."""
    if not _created(row) or _child(row) not in _MODULE_LOADERS:
        return False
    args = _argv(row)[1:]
    if any(a in ("-r", "--remove", "-n", "--dry-run", "--show-depends", "-c", "--showconfig") for a in args):
        return False
    parent = _parent(row)
    if not parent or parent.startswith("kworker"):
        return False
    return parent not in _MODULE_PARENTS and _name(row.get("InitiatingProcessParentFileName")) not in PACKAGE_MANAGERS


_PROC_MEM = re.compile(r"/proc/(\d+|self|\$\w+|\$\{\w+\}|\*)/mem\b")
_SSHD_ATTACH = re.compile(r"(\s-p\s*|--pid[= ]|attach\s+)(\$\(\s*(pidof|pgrep)\s+(-\S+\s+)*sshd|`(pidof|pgrep)\s+sshd)")


@rule("bf3bf9ab-72da-46cc-99ae-c0104e963f8a", "ProcessMemoryAccess",
      "Block ptrace of sshd and reads of other processes' memory by non-debuggers", "T1055.008", PROCESS,
      limits="Read from command lines: ptrace(2) or process_vm_readv(2) called from inside a program is not seen (no"
             " syscall telemetry); attaching to sshd by a numeric PID is matched only when the PID is written"
             " through pidof/pgrep.",
      tactic=AttackTactic.DEFENSE_EVASION)
def process_memory_access(row: Row) -> bool:
    """Any process (debuggers included) attaching to sshd by `-p $(pidof sshd)` / `--pid`; or a process that is not a
    debugger (gdb, lldb, strace, ltrace, perf, valgrind, rr, gcore) naming /proc/<pid>/mem on its command line, or a
    known credential dumper from memory (mimipenguin, linikatz)."""
    if not _created(row):
        return False
    line = str(row.get("ProcessCommandLine") or "")
    if _SSHD_ATTACH.search(line):
        return True
    if _child(row) in DEBUGGERS:
        return False
    return bool(_PROC_MEM.search(line)) or any(tool in line for tool in ("mimipenguin", "linikatz"))


def catalogue() -> list[AsrRule]:
    """Every rule, in registration order."""
    return [entry for _, entry in RULES.items()]


def find(ref: str) -> AsrRule:
    """A rule by GUID (any case) or by name (``ExecFromTempOrRemovable``, any case); lists the known ones."""
    text = ref.strip().lower()
    for entry in _all():
        if entry.guid == text or entry.name.lower() == text:
            return entry
    known = ", ".join(f"{r.name} ({r.guid})" for r in _all())
    raise UnknownAsrRule(f"no ASR rule {ref!r}; known rules: {known}")


def _all() -> Iterable[AsrRule]:
    return catalogue()
