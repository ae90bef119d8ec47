"""Secure configuration checks on fixture root folders the test writes (a hardened host and a lax one), their
evidence, stable ids, the secure score."""

from __future__ import annotations

from pathlib import Path

from vigil.content.tvm_config import RootView
from vigil.tvm.configuration import CHECKS, assess, check_by_id, secure_score, sshd_settings

SYSCTL_GOOD = {"net/ipv4/ip_forward": "0", "net/ipv4/conf/all/accept_redirects": "0",
               "net/ipv4/conf/all/send_redirects": "0", "net/ipv4/tcp_syncookies": "1",
               "kernel/randomize_va_space": "2", "kernel/dmesg_restrict": "1", "fs/suid_dumpable": "0"}


def _write(root: Path, rel: str, text: str, mode: int | None = None) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    if mode is not None:
        p.chmod(mode)


def hardened(root: Path) -> Path:
    _write(root, "etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\n"
           "PasswordAuthentication no\nMaxAuthTries 3\nMatch User backup\n  PasswordAuthentication yes\n")
    _write(root, "etc/ssh/sshd_config.d/10-vigil.conf", "PermitRootLogin no  # first value wins\n")
    for k, v in SYSCTL_GOOD.items():
        _write(root, f"proc/sys/{k}", v + "\n")
    _write(root, "proc/self/mounts", "tmpfs /tmp tmpfs rw,nosuid,nodev,noexec 0 0\n"
           "tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\ntmpfs /dev/shm tmpfs rw,nosuid,nodev,noexec 0 0\n")
    _write(root, "etc/ufw/ufw.conf", "ENABLED=yes\n")
    _write(root, "usr/sbin/auditd", "")
    _write(root, "etc/systemd/system/multi-user.target.wants/auditd.service", "")
    _write(root, "etc/security/pwquality.conf", "minlen = 8\n")
    _write(root, "etc/security/pwquality.conf.d/50-vigil.conf", "minlen = 14\n")
    _write(root, "etc/login.defs", "PASS_MAX_DAYS   90\n")
    _write(root, "etc/shadow", "root:*:1::::::\n", 0o640)
    _write(root, "etc/apt/apt.conf.d/20auto-upgrades", 'APT::Periodic::Unattended-Upgrade "1";\n')
    _write(root, "usr/bin/unattended-upgrade", "", 0o755)
    _write(root, "etc/environment", 'PATH="/usr/bin:/opt/tools"\n')
    (root / "opt/tools").mkdir(parents=True)
    (root / "opt/tools").chmod(0o755)
    (root / "usr/bin").chmod(0o755)
    return root


def test_a_hardened_host_passes_every_check(tmp_path: Path) -> None:
    results = assess(RootView(hardened(tmp_path)))
    failing = {a.check.id: a.result.evidence for a in results if not a.result.compliant}
    assert failing == {}
    assert secure_score(results) == 100.0
    by_id = {a.check.id: a for a in results}
    assert "PermitRootLogin no (/" in by_id["scid-vgl-1001"].result.evidence
    assert "10-vigil.conf:1" in by_id["scid-vgl-1001"].result.evidence
    assert "minlen = 14" in by_id["scid-vgl-5001"].result.evidence
    row = by_id["scid-vgl-4002"].to_json()
    assert row["IsCompliant"] is True and row["ConfigurationImpact"] == 5 and row["ConfigurationCategory"] == "OS"
    # Match blocks are conditional: their PasswordAuthentication does not count
    assert sshd_settings(RootView(tmp_path))["passwordauthentication"][0] == "no"  # type: ignore[index]


def test_a_lax_host_fails_with_evidence_and_the_score_weighs_impact(tmp_path: Path) -> None:
    root = hardened(tmp_path)
    (root / "etc/ssh/sshd_config.d/10-vigil.conf").unlink()
    _write(root, "proc/sys/net/ipv4/ip_forward", "1\n")
    _write(root, "proc/self/mounts", "tmpfs /dev/shm tmpfs rw,nosuid 0 0\n")
    (root / "etc/ufw/ufw.conf").write_text("ENABLED=no\n")
    (root / "etc/shadow").chmod(0o644)
    (root / "opt/tools").chmod(0o777)
    _write(root, "usr/bin/evil", "", 0o777)
    (root / "etc/apt/apt.conf.d/20auto-upgrades").write_text('APT::Periodic::Unattended-Upgrade "0";\n')
    results = assess(RootView(root))
    failing = {a.check.id: a.result.evidence for a in results if a.result.compliant is False}
    assert set(failing) == {"scid-vgl-1001", "scid-vgl-2001", "scid-vgl-3001", "scid-vgl-4001", "scid-vgl-4002",
                            "scid-vgl-5003", "scid-vgl-6001", "scid-vgl-7001"}
    assert failing["scid-vgl-1001"].startswith("PermitRootLogin yes (/")
    assert failing["scid-vgl-2001"] == "net.ipv4.ip_forward = 1 (/proc/sys/net/ipv4/ip_forward)"
    assert "missing nodev,noexec" in failing["scid-vgl-4002"] and "not a separate mount" in failing["scid-vgl-4001"]
    assert "/opt/tools (folder 777)" in failing["scid-vgl-7001"] and "/usr/bin/evil (777)" in failing["scid-vgl-7001"]
    assert "644" in failing["scid-vgl-5003"]
    lost = sum(check_by_id(i).impact for i in failing)
    total = sum(c.impact for c in CHECKS)
    assert secure_score(results) == round(100 * (total - lost) / total, 1)


def test_missing_subjects_are_not_applicable_and_ids_are_stable(tmp_path: Path) -> None:
    _write(tmp_path, "proc/self/mounts", "")
    results = assess(RootView(tmp_path))
    na = {a.check.id for a in results if a.result.compliant is None}
    assert {"scid-vgl-1001", "scid-vgl-1005", "scid-vgl-2001", "scid-vgl-5003", "scid-vgl-6001"} <= na
    assert len({c.id for c in CHECKS}) == len(CHECKS) and all(1 <= c.impact <= 10 and c.fix for c in CHECKS)
    _write(tmp_path, "etc/ssh/sshd_config", "MaxAuthTries lots\n")
    odd = next(a for a in assess(RootView(tmp_path)) if a.check.id == "scid-vgl-1005")
    assert odd.result.compliant is None and "is not a number" in odd.result.evidence
    assert secure_score([]) == 0.0
