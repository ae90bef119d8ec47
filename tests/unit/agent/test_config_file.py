"""Settings files: local TOML, flags over it, managed TOML over both; errors name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.agent.config import DEFAULT_STATE_DIR, STATE_DIR_ENV, default_state_dir
from vigil.agent.config_file import ConfigFileError, load_config


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_managed_settings_override_local_ones_and_flags(tmp_path: Path) -> None:
    local = write(tmp_path / "agent.toml", f"""
state_dir = "{tmp_path}/state"
heartbeat_seconds = 10
device_tags = ["web", "prod"]
[file]
paths = ["/srv"]
exclude_paths = ["/srv/cache/"]
[budget]
cpu_percent = 50
[budget.rate_limits]
file = 500
""")
    managed = write(tmp_path / "managed.toml", """
heartbeat_seconds = 60
use_audit = true
[budget]
cpu_percent = 10
""")
    loaded = load_config(local, managed, {"use_audit": False, "batch_seconds": 1.0})
    c = loaded.config
    assert c.state_dir == tmp_path / "state" and c.device_tags == ("web", "prod")
    assert c.file_paths == ("/srv",) and c.file_exclude_paths == ("/srv/cache/",)
    assert c.heartbeat_seconds == 60.0 and c.use_audit is True and c.batch_seconds == 1.0
    assert c.budget.cpu_percent == 10 and c.budget.rate_for("file") == 500.0
    assert loaded.sources == (local, managed)
    assert loaded.managed_keys == ("budget.cpu_percent", "heartbeat_seconds", "use_audit")


def test_missing_files_mean_defaults(tmp_path: Path) -> None:
    loaded = load_config(tmp_path / "no.toml", tmp_path / "none.toml", {"state_dir": tmp_path})
    assert loaded.sources == () and loaded.config.file_paths == ("/",)


def test_the_state_folder_default_is_given_by_the_caller_not_read_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "from-env"))
    assert load_config(None, None).config.state_dir == DEFAULT_STATE_DIR
    assert load_config(None, None, default_state=tmp_path / "given").config.state_dir == tmp_path / "given"
    named = write(tmp_path / "agent.toml", f'state_dir = "{tmp_path}/named"')
    assert load_config(named, None, default_state=tmp_path / "given").config.state_dir == tmp_path / "named"
    assert default_state_dir({STATE_DIR_ENV: "/srv/agent"}) == Path("/srv/agent")
    assert default_state_dir({}) == DEFAULT_STATE_DIR


@pytest.mark.parametrize(("text", "key"), [
    ("heartbeat_seconds = 'soon'", "heartbeat_seconds"),
    ("colour = 'red'", "colour"),
    ("[file]\npaths = '/'", "file_paths"),
    ("[budget]\nturbo = 1", "budget.turbo"),
    ("device_tags = [1, 2]", "device_tags"),
])
def test_bad_settings_name_the_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path / "agent.toml", text)
    with pytest.raises(ConfigFileError) as e:
        load_config(path, None)
    assert e.value.path == path and e.value.key == key


def test_invalid_toml_and_invalid_values_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        load_config(write(tmp_path / "a.toml", "x = = 1"), None)
    with pytest.raises(ConfigFileError, match="absolute"):
        load_config(write(tmp_path / "b.toml", f'state_dir = "{tmp_path}"\n[file]\npaths = ["relative"]'), None)


def test_logon_sources_and_utmp_paths(tmp_path: Path) -> None:
    local = write(tmp_path / "agent.toml", f"""
state_dir = "{tmp_path}"
[logon]
logon_sources = ["auth_log", "wtmp"]
wtmp_path = "/srv/wtmp"
btmp_path = "/srv/btmp"
""")
    c = load_config(local, None).config
    assert (c.logon_sources, c.wtmp_path, c.btmp_path) == (("auth_log", "wtmp"), Path("/srv/wtmp"), Path("/srv/btmp"))
    with pytest.raises(ConfigFileError, match=r"logon_sources must name each of audit, journald, auth_log, wtmp"
                                              r" at most once.*\['wtmp', 'utmp'\]"):
        load_config(write(tmp_path / "b.toml", f'state_dir = "{tmp_path}"\n[logon]\nlogon_sources = ["wtmp", "utmp"]'),
                    None)
    with pytest.raises(ConfigFileError, match="logon_sources"):
        load_config(write(tmp_path / "c.toml", f'state_dir = "{tmp_path}"\n[logon]\nlogon_sources = []'), None)


def test_process_provider_is_read_from_the_file_and_checked(tmp_path: Path) -> None:
    local = write(tmp_path / "agent.toml", f"""
state_dir = "{tmp_path}/state"
process_provider = "proc_connector"
bpf_object_path = "/opt/vigil/process.bpf.o"
""")
    c = load_config(local, None).config
    assert c.process_provider == "proc_connector" and c.bpf_object_path == Path("/opt/vigil/process.bpf.o")
    with pytest.raises(ConfigFileError, match="process_provider must be one of auto, ebpf, proc_connector, not 'bpf'"):
        load_config(write(tmp_path / "bad.toml", 'process_provider = "bpf"\n'), None)
    with pytest.raises(ConfigFileError, match=r"bad2.toml: process_provider: expected a string, got int"):
        load_config(write(tmp_path / "bad2.toml", "process_provider = 1\n"), None)


def test_network_provider_is_read_from_the_network_section_and_checked(tmp_path: Path) -> None:
    local = write(tmp_path / "agent.toml", f"""
state_dir = "{tmp_path}/state"
[network]
provider = "audit"
bpf_object_path = "/opt/vigil/network.bpf.o"
""")
    c = load_config(local, None).config
    assert c.network_provider == "audit" and c.network_bpf_object_path == Path("/opt/vigil/network.bpf.o")
    assert load_config(write(tmp_path / "none.toml", ""), None).config.network_provider == "auto"
    with pytest.raises(ConfigFileError, match="network_provider must be one of auto, ebpf, audit, not 'kprobe'"):
        load_config(write(tmp_path / "bad.toml", '[network]\nprovider = "kprobe"\n'), None)
    with pytest.raises(ConfigFileError, match=r"bad2.toml: network_bpf_object_path: expected a path string"):
        load_config(write(tmp_path / "bad2.toml", "[network]\nbpf_object_path = 3\n"), None)
