"""Secure configuration assessment: CIS-style Linux checks, each with a stable ConfigurationId, a category, an impact
1-10, the evidence it read and the fix; and the secure (configuration) score they add up to.

Checks read the host through `HostView` (files, sysctl values, mounts, file modes), so the engine does no I/O:
`vigil.content.tvm_config.RootView` reads a real root folder (`/`, or a fixture tree in tests).

A check whose subject is absent (no sshd installed) is not applicable and leaves the score; the score is

    secure score = 100 · Σ impact of compliant checks / Σ impact of applicable checks   (0 when none apply)
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class HostView(Protocol):
    def read(self, path: str) -> str | None:
        """A file's text, or None when it does not exist or cannot be read."""

    def listdir(self, path: str) -> list[str] | None:
        """A folder's entry names, or None when it is not a folder."""

    def mode(self, path: str) -> int | None:
        """The st_mode of a path (symlinks followed), or None when absent."""

    def exists(self, path: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Result:
    compliant: bool | None  # None: not applicable on this host
    evidence: str


@dataclass(frozen=True, slots=True)
class Check:
    id: str  # ConfigurationId, stable: never reused for another check
    name: str
    category: str  # Defender's categories: Network, OS, Accounts, Security controls, Application
    subcategory: str
    impact: int  # 1-10: how much the setting lowers the attack surface
    fix: str
    run: Callable[[HostView], Result]

    @property
    def expected_user_impact(self) -> bool:
        """Applying the fix may stop something users or services do (password logins, forwarding, exec in /tmp)."""
        return self.id in _USER_IMPACT


@dataclass(frozen=True, slots=True)
class Assessment:
    check: Check
    result: Result

    def to_json(self) -> dict[str, Any]:
        """One row of `DeviceTvmSecureConfigurationAssessment`'s own columns and the check's description."""
        return {"ConfigurationId": self.check.id, "ConfigurationName": self.check.name,
                "ConfigurationCategory": self.check.category, "ConfigurationSubcategory": self.check.subcategory,
                "ConfigurationImpact": self.check.impact, "IsApplicable": self.result.compliant is not None,
                "IsCompliant": bool(self.result.compliant), "Evidence": self.result.evidence,
                "IsExpectedUserImpact": self.check.expected_user_impact, "RemediationOptions": self.check.fix}


def secure_score(assessments: Iterable[Assessment]) -> float:
    applicable = [a for a in assessments if a.result.compliant is not None]
    total = sum(a.check.impact for a in applicable)
    if not total:
        return 0.0
    return round(100 * sum(a.check.impact for a in applicable if a.result.compliant) / total, 1)


def assess(host: HostView, checks: Sequence[Check] | None = None) -> list[Assessment]:
    """Every check on the host; a check that raises is reported as not applicable with the error as evidence, so
    one odd file cannot hide the rest."""
    out = []
    for c in checks or CHECKS:
        try:
            result = c.run(host)
        except (ValueError, OSError) as e:
            result = Result(None, f"could not be assessed: {e}")
        out.append(Assessment(c, result))
    return out


# -- sshd -----------------------------------------------------------------------------------------------------

_SSHD = "/etc/ssh/sshd_config"


def sshd_settings(host: HostView) -> dict[str, tuple[str, str]] | None:
    """sshd's effective global settings (lower-cased keyword -> (value, where)); the first value wins, as in sshd,
    and `Include`d files count where they are included (Debian's sshd_config.d/*.conf before the rest). `Match`
    blocks are conditional and not read. None when sshd_config does not exist (sshd not installed)."""
    if host.read(_SSHD) is None:
        return None
    out: dict[str, tuple[str, str]] = {}
    _read_sshd(host, _SSHD, out, 0)
    return out


def _read_sshd(host: HostView, path: str, out: dict[str, tuple[str, str]], depth: int) -> None:
    text = host.read(path)
    if text is None or depth > 4:
        return
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.replace("=", " ", 1).partition(" ")
        key, value = key.lower(), value.strip()
        if key == "match":
            return  # everything after the first Match belongs to a conditional block
        if key == "include":
            for pattern in shlex.split(value):
                full = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
                folder, _, glob = full.rpartition("/")
                for name in sorted(host.listdir(folder) or []):
                    if fnmatch.fnmatch(name, glob):
                        _read_sshd(host, f"{folder}/{name}", out, depth + 1)
            continue
        out.setdefault(key, (value, f"{path}:{n}"))


def _sshd_check(keyword: str, good: set[str], default: str) -> Callable[[HostView], Result]:
    def run(host: HostView) -> Result:
        settings = sshd_settings(host)
        if settings is None:
            return Result(None, f"{_SSHD} absent: sshd is not installed")
        value, where = settings.get(keyword.lower(), (default, "sshd's default"))
        return Result(value.lower() in good, f"{keyword} {value} ({where})")
    return run


# -- sysctl ---------------------------------------------------------------------------------------------------

def _sysctl_check(key: str, want: str) -> Callable[[HostView], Result]:
    def run(host: HostView) -> Result:
        path = "/proc/sys/" + key.replace(".", "/")
        value = host.read(path)
        if value is None:
            return Result(None, f"{path} absent (the kernel has no {key})")
        got = " ".join(value.split())
        return Result(got == want, f"{key} = {got} ({path})")
    return run


# -- mounts ---------------------------------------------------------------------------------------------------

def _mount_check(point: str, options: tuple[str, ...]) -> Callable[[HostView], Result]:
    def run(host: HostView) -> Result:
        mounts = host.read("/proc/self/mounts") or ""
        found = None
        for line in mounts.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[1] == point:
                found = parts  # the last mount on a point is the one in effect
        if found is None:
            return Result(False, f"{point} is not a separate mount (/proc/self/mounts)")
        have = set(found[3].split(","))
        missing = [o for o in options if o not in have]
        return Result(not missing, f"{point} mounted {found[2]} with {found[3]}"
                      + (f"; missing {','.join(missing)}" if missing else ""))
    return run


# -- services, packages, files --------------------------------------------------------------------------------

_WANTS = ("/etc/systemd/system/multi-user.target.wants", "/etc/systemd/system/sysinit.target.wants")


def _enabled_unit(host: HostView, unit: str) -> str | None:
    for folder in _WANTS:
        if host.exists(f"{folder}/{unit}"):
            return f"{folder}/{unit}"
    return None


def _firewall(host: HostView) -> Result:
    ufw = host.read("/etc/ufw/ufw.conf") or ""
    if re.search(r"^\s*ENABLED\s*=\s*yes\s*$", ufw, re.M):
        return Result(True, "ufw enabled (/etc/ufw/ufw.conf ENABLED=yes)")
    for unit in ("nftables.service", "firewalld.service", "netfilter-persistent.service", "iptables.service"):
        where = _enabled_unit(host, unit)
        if where:
            return Result(True, f"{unit} enabled ({where})")
    return Result(False, "no enabled firewall: ufw not enabled, no nftables, firewalld, netfilter-persistent or "
                         "iptables service in the systemd wants folders")


def _auditd(host: HostView) -> Result:
    binary = next((p for p in ("/usr/sbin/auditd", "/sbin/auditd") if host.exists(p)), None)
    if binary is None:
        return Result(False, "auditd is not installed (no /usr/sbin/auditd)")
    where = _enabled_unit(host, "auditd.service")
    return Result(where is not None, f"{binary} installed; auditd.service "
                  + (f"enabled ({where})" if where else "not enabled"))


def _login_defs(key: str, ok: Callable[[int], bool], want: str) -> Callable[[HostView], Result]:
    def run(host: HostView) -> Result:
        text = host.read("/etc/login.defs")
        if text is None:
            return Result(None, "/etc/login.defs absent")
        m = re.search(rf"^\s*{key}\s+(-?\d+)", text, re.M)
        if m is None:
            return Result(False, f"{key} not set in /etc/login.defs ({want})")
        return Result(ok(int(m.group(1))), f"{key} {m.group(1)} (/etc/login.defs; {want})")
    return run


def _pwquality(host: HostView) -> Result:
    texts = [("/etc/security/pwquality.conf", host.read("/etc/security/pwquality.conf"))]
    texts += [(f"/etc/security/pwquality.conf.d/{n}", host.read(f"/etc/security/pwquality.conf.d/{n}"))
              for n in sorted(host.listdir("/etc/security/pwquality.conf.d") or []) if n.endswith(".conf")]
    value, where = None, ""
    for path, text in texts:
        for m in re.finditer(r"^\s*minlen\s*=\s*(\d+)", text or "", re.M):
            value, where = int(m.group(1)), path  # later files override
    if value is None:
        present = any(t is not None for _, t in texts)
        return Result(False, "minlen not set in pwquality.conf (default 8)" if present
                      else "pam_pwquality not configured (no /etc/security/pwquality.conf)")
    return Result(value >= 14, f"minlen = {value} ({where}; 14 or more)")


def _unattended(host: HostView) -> Result:
    texts = "\n".join(host.read(f"/etc/apt/apt.conf.d/{n}") or ""
                      for n in sorted(host.listdir("/etc/apt/apt.conf.d") or []))
    if host.exists("/etc/apt/apt.conf.d") or host.exists("/usr/bin/apt-get"):
        m = re.search(r'APT::Periodic::Unattended-Upgrade\s+"(\d+)"', texts)
        if m and m.group(1) != "0" and host.exists("/usr/bin/unattended-upgrade"):
            return Result(True, f'APT::Periodic::Unattended-Upgrade "{m.group(1)}" and unattended-upgrades installed')
        return Result(False, "APT::Periodic::Unattended-Upgrade not enabled in /etc/apt/apt.conf.d"
                      + ("" if host.exists("/usr/bin/unattended-upgrade") else "; unattended-upgrades not installed"))
    if host.exists("/usr/bin/dnf") or host.exists("/usr/bin/yum"):
        where = next((w for u in ("dnf-automatic.timer", "dnf-automatic-install.timer")
                      if (w := _timer(host, u))), None)
        return Result(where is not None, f"dnf-automatic timer enabled ({where})" if where
                      else "no dnf-automatic timer enabled")
    return Result(None, "no apt or dnf package manager")


def _timer(host: HostView, unit: str) -> str | None:
    path = f"/etc/systemd/system/timers.target.wants/{unit}"
    return path if host.exists(path) else None


_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _path_dirs(host: HostView) -> list[str]:
    text = host.read("/etc/environment") or ""
    m = re.search(r'^\s*PATH\s*=\s*"?([^"\n]*)"?', text, re.M)
    return [d for d in (m.group(1) if m else _DEFAULT_PATH).split(":") if d.startswith("/")]


def _world_writable_path(host: HostView) -> Result:
    bad: list[str] = []
    looked = 0
    for d in _path_dirs(host):
        mode = host.mode(d)
        if mode is None:
            continue
        looked += 1
        if mode & 0o002 and not mode & 0o1000:
            bad.append(f"{d} (folder {mode & 0o7777:o})")
        for name in sorted(host.listdir(d) or [])[:5000]:
            m = host.mode(f"{d}/{name}")
            if m is not None and m & 0o002 and not (m & 0o170000 == 0o040000 and m & 0o1000):
                bad.append(f"{d}/{name} ({m & 0o7777:o})")
    if bad:
        return Result(False, "world-writable in PATH: " + ", ".join(bad[:10]) + (" …" if len(bad) > 10 else ""))
    return Result(True, f"no world-writable entry in the {looked} PATH folders")


def _shadow(host: HostView) -> Result:
    mode = host.mode("/etc/shadow")
    if mode is None:
        return Result(None, "/etc/shadow absent")
    return Result(not mode & 0o007, f"/etc/shadow mode {mode & 0o7777:o} (no access for others)")


_USER_IMPACT = frozenset({"scid-vgl-1002", "scid-vgl-2001", "scid-vgl-4001", "scid-vgl-5001", "scid-vgl-5002"})

CHECKS: tuple[Check, ...] = (
    Check("scid-vgl-1001", "Disable root login over SSH", "Accounts", "SSH", 8,
          "Set `PermitRootLogin no` in /etc/ssh/sshd_config (before any Match block) and reload sshd.",
          _sshd_check("PermitRootLogin", {"no"}, "prohibit-password")),
    Check("scid-vgl-1002", "Disable SSH password authentication", "Accounts", "SSH", 7,
          "Set `PasswordAuthentication no` in /etc/ssh/sshd_config (keys only) and reload sshd.",
          _sshd_check("PasswordAuthentication", {"no"}, "yes")),
    Check("scid-vgl-1003", "Forbid empty SSH passwords", "Accounts", "SSH", 9,
          "Set `PermitEmptyPasswords no` in /etc/ssh/sshd_config.",
          _sshd_check("PermitEmptyPasswords", {"no"}, "no")),
    Check("scid-vgl-1004", "Disable SSH X11 forwarding", "Network", "SSH", 3,
          "Set `X11Forwarding no` in /etc/ssh/sshd_config.",
          _sshd_check("X11Forwarding", {"no"}, "no")),
    Check("scid-vgl-1005", "Limit SSH authentication attempts", "Accounts", "SSH", 4,
          "Set `MaxAuthTries 4` (or fewer) in /etc/ssh/sshd_config.",
          lambda h: _max_auth_tries(h)),
    Check("scid-vgl-2001", "Disable IPv4 forwarding", "Network", "sysctl", 5,
          "Set `net.ipv4.ip_forward = 0` in /etc/sysctl.d/60-vigil.conf and run `sysctl --system` (not on routers "
          "or container hosts).", _sysctl_check("net.ipv4.ip_forward", "0")),
    Check("scid-vgl-2002", "Ignore ICMP redirects", "Network", "sysctl", 5,
          "Set `net.ipv4.conf.all.accept_redirects = 0` in /etc/sysctl.d/ and run `sysctl --system`.",
          _sysctl_check("net.ipv4.conf.all.accept_redirects", "0")),
    Check("scid-vgl-2003", "Do not send ICMP redirects", "Network", "sysctl", 4,
          "Set `net.ipv4.conf.all.send_redirects = 0` in /etc/sysctl.d/ and run `sysctl --system`.",
          _sysctl_check("net.ipv4.conf.all.send_redirects", "0")),
    Check("scid-vgl-2004", "Enable TCP SYN cookies", "Network", "sysctl", 4,
          "Set `net.ipv4.tcp_syncookies = 1` in /etc/sysctl.d/ and run `sysctl --system`.",
          _sysctl_check("net.ipv4.tcp_syncookies", "1")),
    Check("scid-vgl-2005", "Full address space layout randomisation", "OS", "sysctl", 8,
          "Set `kernel.randomize_va_space = 2` in /etc/sysctl.d/ and run `sysctl --system`.",
          _sysctl_check("kernel.randomize_va_space", "2")),
    Check("scid-vgl-2006", "Restrict the kernel log to root", "OS", "sysctl", 3,
          "Set `kernel.dmesg_restrict = 1` in /etc/sysctl.d/ and run `sysctl --system`.",
          _sysctl_check("kernel.dmesg_restrict", "1")),
    Check("scid-vgl-2007", "No core dumps of setuid programs", "OS", "sysctl", 5,
          "Set `fs.suid_dumpable = 0` in /etc/sysctl.d/ and run `sysctl --system`.",
          _sysctl_check("fs.suid_dumpable", "0")),
    Check("scid-vgl-3001", "Enable a host firewall", "Network", "Firewall", 9,
          "Enable one: `ufw enable`, or `systemctl enable --now nftables` with a ruleset in /etc/nftables.conf, or "
          "`systemctl enable --now firewalld`.", _firewall),
    Check("scid-vgl-3002", "Enable the audit daemon", "Security controls", "Auditing", 6,
          "Install auditd (`apt install auditd` / `dnf install audit`) and `systemctl enable --now auditd`.",
          _auditd),
    Check("scid-vgl-4001", "Mount /tmp with nodev, nosuid, noexec", "OS", "Mount options", 5,
          "Mount /tmp separately (e.g. `systemctl enable tmp.mount`, or a tmpfs line in /etc/fstab) with "
          "`nodev,nosuid,noexec`.", _mount_check("/tmp", ("nodev", "nosuid", "noexec"))),  # noqa: S108 (a mount point)
    Check("scid-vgl-4002", "Mount /dev/shm with nodev, nosuid, noexec", "OS", "Mount options", 5,
          "Add `tmpfs /dev/shm tmpfs defaults,nodev,nosuid,noexec 0 0` to /etc/fstab and `mount -o remount "
          "/dev/shm`.", _mount_check("/dev/shm", ("nodev", "nosuid", "noexec"))),  # noqa: S108
    Check("scid-vgl-5001", "Require passwords of 14 characters or more", "Accounts", "Password policy", 6,
          "Install libpam-pwquality (or libpwquality) and set `minlen = 14` in /etc/security/pwquality.conf.",
          _pwquality),
    Check("scid-vgl-5002", "Expire passwords within a year", "Accounts", "Password policy", 3,
          "Set `PASS_MAX_DAYS 365` (or fewer) in /etc/login.defs (applies to new accounts; `chage --maxdays 365 "
          "<user>` for existing ones).", _login_defs("PASS_MAX_DAYS", lambda v: 0 < v <= 365, "365 or fewer")),
    Check("scid-vgl-5003", "Protect /etc/shadow from other users", "Accounts", "File permissions", 9,
          "`chmod 640 /etc/shadow` (owner root, group shadow).", _shadow),
    Check("scid-vgl-6001", "Install security updates automatically", "OS", "Updates", 7,
          "Debian: `apt install unattended-upgrades` and `dpkg-reconfigure -plow unattended-upgrades`; EL: "
          "`dnf install dnf-automatic` and `systemctl enable --now dnf-automatic-install.timer`.", _unattended),
    Check("scid-vgl-7001", "No world-writable files or folders in PATH", "OS", "File permissions", 8,
          "`chmod o-w` each entry named in the evidence (a world-writable PATH entry lets any user replace a "
          "command root runs).", _world_writable_path),
)


def _max_auth_tries(host: HostView) -> Result:
    settings = sshd_settings(host)
    if settings is None:
        return Result(None, f"{_SSHD} absent: sshd is not installed")
    value, where = settings.get("maxauthtries", ("6", "sshd's default"))
    if not value.isdigit():
        raise ValueError(f"MaxAuthTries {value!r} ({where}) is not a number")
    return Result(int(value) <= 4, f"MaxAuthTries {value} ({where}; 4 or fewer)")


def check_by_id(configuration_id: str) -> Check:
    for c in CHECKS:
        if c.id == configuration_id:
            return c
    raise KeyError(configuration_id)
