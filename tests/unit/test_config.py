"""Settings: the `[oidc]` table is checked when vigil.toml is read, with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.config import OidcSettings, SettingsError, load_settings

BASE = 'client_id = "vigil"\n'


def settings_with(tmp_path: Path, oidc: str) -> OidcSettings:
    (tmp_path / "vigil.toml").write_text(f"[oidc]\n{oidc}")
    settings = load_settings(tmp_path, env={}).oidc
    assert settings is not None
    return settings


def test_an_oidc_table_is_read_with_its_group_map(tmp_path: Path) -> None:
    oidc = settings_with(tmp_path, BASE + 'issuer = "https://sso.example/realms/acme/"\n'
                                          '[oidc.group_map]\n"soc" = ["SOC Tier 1"]\n')
    assert oidc.issuer == "https://sso.example/realms/acme"
    assert oidc.group_map == {"soc": ["SOC Tier 1"]}


@pytest.mark.parametrize(("oidc", "named"), [
    ('issuer = "http://sso.example"\n' + BASE, "oidc.issuer"),
    ('issuer = "https://sso.example"\n' + BASE + 'scopes = ["profile"]\n', "oidc.scopes"),
    ('issuer = "https://sso.example"\n' + BASE + 'client_secret = "a"\nclient_secret_file = "/x"\n', "oidc"),
    ('issuer = "https://sso.example"\n' + BASE + 'groups = "x"\n', "oidc.groups"),
])
def test_bad_oidc_settings_name_the_field(tmp_path: Path, oidc: str, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        settings_with(tmp_path, oidc)


def test_loopback_http_issuer_and_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    oidc = settings_with(tmp_path, BASE + f'issuer = "http://127.0.0.1:8080"\nclient_secret_file = "{secret}"\n')
    assert oidc.secret() == "s3cret"
    secret.unlink()
    with pytest.raises(SettingsError, match="client_secret_file"):
        oidc.secret()


@pytest.mark.parametrize(("line", "named"), [
    ('trusted_proxies = ["10.0.0.0/33"]', "trusted_proxies"),
    ('trusted_proxies = ["proxy.example"]', "trusted_proxies"),
    ('metrics_token = "short"', "metrics_token"),
])
def test_bad_proxy_and_metrics_settings_name_the_field(tmp_path: Path, line: str, named: str) -> None:
    (tmp_path / "vigil.toml").write_text(line + "\n")
    with pytest.raises(SettingsError, match=named):
        load_settings(tmp_path, env={})


def test_the_scrape_token_is_the_setting_else_the_file(tmp_path: Path) -> None:
    (tmp_path / "vigil.toml").write_text('trusted_proxies = ["10.1.2.3", "fd00::/8"]\n')
    settings = load_settings(tmp_path, env={})
    assert settings.trusted_proxies == ["10.1.2.3", "fd00::/8"] and settings.scrape_token() == ""
    settings.pki_dir.mkdir()
    settings.metrics_token_file.write_text("t" * 40 + "\n")
    assert settings.scrape_token() == "t" * 40
    assert load_settings(tmp_path, env={"VIGIL_METRICS_TOKEN": "e" * 32}).scrape_token() == "e" * 32


def test_the_data_dir_is_the_flag_then_the_environment_then_make_ups_var_then_var_lib(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vigil.config import DEFAULT_DATA_DIR, data_dir_from_env

    monkeypatch.delenv("VIGIL_DATA_DIR", raising=False)
    assert data_dir_from_env(None, cwd=tmp_path) == DEFAULT_DATA_DIR
    (tmp_path / "var").mkdir()
    assert data_dir_from_env(None, cwd=tmp_path) == DEFAULT_DATA_DIR  # an empty ./var is no server
    (tmp_path / "var" / "vigil.toml").write_text("")
    assert data_dir_from_env(None, cwd=tmp_path) == (tmp_path / "var").resolve()
    monkeypatch.setenv("VIGIL_DATA_DIR", str(tmp_path / "env"))
    assert data_dir_from_env(None, cwd=tmp_path) == tmp_path / "env"
    assert data_dir_from_env(tmp_path / "flag", cwd=tmp_path) == tmp_path / "flag"


def test_the_agent_state_dir_is_the_environment_then_make_ups_var_agent_then_var_lib(tmp_path: Path) -> None:
    from vigil.agent.config import DEFAULT_STATE_DIR, STATE_DIR_ENV, default_state_dir

    assert default_state_dir({}, cwd=tmp_path) == DEFAULT_STATE_DIR
    (tmp_path / "var" / "agent").mkdir(parents=True)
    assert default_state_dir({}, cwd=tmp_path) == DEFAULT_STATE_DIR  # not enrolled there
    (tmp_path / "var" / "agent" / "identity.json").write_text("{}")
    assert default_state_dir({}, cwd=tmp_path) == (tmp_path / "var" / "agent").resolve()
    assert default_state_dir({STATE_DIR_ENV: "/srv/agent"}, cwd=tmp_path) == Path("/srv/agent")
