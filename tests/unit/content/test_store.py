"""The rule content store: releases imported from folders and zips, versions, default statuses, and rules or
folders switched and re-levelled store-wide and per device group, as the rule set that runs sees them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.detect.support import rule_yaml
from vigil.cli import app
from vigil.content.store import ContentError, ContentStore

NC = "11111111-0000-4000-8000-000000000001"
CURL = "11111111-0000-4000-8000-000000000002"
WGET = "11111111-0000-4000-8000-000000000003"
LINUX = "product: linux\ncategory: process_creation"


def _rule(rule_id: str, binary: str, status: str, level: str = "high") -> str:
    return rule_yaml(f"s:\n  Image|endswith: '/{binary}'\ncondition: s", logsource=LINUX, rule_id=rule_id,
                     title=f"{binary} ran", level=level).replace("status: test", f"status: {status}")


def _release(root: Path, *, extra: dict[str, str] | None = None) -> Path:
    """A self-made Sigma release: a stable, an experimental and a test rule in two folders, and a broken one."""
    files = {
        "rules/linux/net/nc.yml": _rule(NC, "nc", "stable"),
        "rules/linux/net/curl.yml": _rule(CURL, "curl", "experimental"),
        "rules/linux/dl/wget.yml": _rule(WGET, "wget", "test", level="low"),
        "rules/windows/broken.yml": rule_yaml("s:\n  Image|nosuch: x\ncondition: s"),
        "LICENSE.Detection.Rules.md": "Detection Rule License",
        **(extra or {}),
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _zip(folder: Path, target: Path, extra: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(target, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(folder).as_posix())
        for name, text in (extra or {}).items():
            z.writestr(name, text)
    return target


def _fired(store: ContentStore, binary: str, group: str | None = None) -> list[tuple[str, str]]:
    ruleset = store.load(group).ruleset
    row = {"ActionType": "ProcessCreated", "FolderPath": f"/usr/bin/{binary}"}
    return [(h.rule_id, h.level.value) for h in ruleset.match_telemetry("DeviceProcessEvents", row)]


def test_a_zip_release_imports_with_its_version_source_and_statuses(tmp_path: Path) -> None:
    release = _zip(_release(tmp_path / "rel"), tmp_path / "sigma_core-r2024-09-02.zip")
    store = ContentStore(tmp_path / "content")
    report = store.import_release(release)
    assert (report.pack, report.version, report.files, report.rules, report.current) == (
        "sigmahq", "r2024-09-02", 4, 3, True)
    [error] = report.errors
    assert error.path == tmp_path / "content/packs/sigmahq/r2024-09-02/rules/windows/broken.yml"
    assert (error.line, error.column) == (14, 7) and "nosuch" in error.reason
    entries = {e.rule_id: e for e in store.entries()}
    assert {i: (e.status, e.enabled, e.version, e.source) for i, e in entries.items()} == {
        NC: ("stable", True, "r2024-09-02", str(release)),
        CURL: ("experimental", False, "r2024-09-02", str(release)),  # experimental is off by default
        WGET: ("test", True, "r2024-09-02", str(release)),
    }
    assert entries[NC].folder == "sigmahq/rules/linux/net"
    assert (tmp_path / "content/packs/sigmahq/r2024-09-02/LICENSE.Detection.Rules.md").exists()
    assert [str(e) for e in store.load_errors()] == [str(error)]
    assert _fired(store, "nc") == [(NC, "high")] and _fired(store, "curl") == []


def test_import_refuses_a_second_import_and_update_keeps_versions(tmp_path: Path) -> None:
    folder = _release(tmp_path / "sigma-r2024-09-02")
    store = ContentStore(tmp_path / "content")
    store.import_release(folder)
    with pytest.raises(ContentError, match="already in the store"):
        store.import_release(folder)
    assert store.import_release(folder, update=True).already
    (folder / "rules/linux/net/curl.yml").write_text(_rule(CURL, "curl", "stable"))
    newer = store.import_release(folder, update=True, version="r2024-10-01")
    assert newer.current and not newer.already
    pack = store.packs()["sigmahq"]
    assert pack["current"] == "r2024-10-01" and set(pack["versions"]) == {"r2024-09-02", "r2024-10-01"}
    assert _fired(store, "curl") == [(CURL, "high")]  # stable in the new release
    back = store.import_release(tmp_path / "sigma-r2024-09-02", update=True, version="r2024-09-02")
    assert back.already and store.packs()["sigmahq"]["current"] == "r2024-09-02"  # a rollback, nothing copied
    assert _fired(store, "curl") == []  # experimental again
    with pytest.raises(ContentError, match="import it first"):
        store.import_release(folder, pack="other", update=True)


@pytest.mark.parametrize("name", ["../evil.yml", "/abs/evil.yml", "rules/../../evil.yml", "C:/evil.yml"])
def test_a_zip_entry_that_would_leave_the_store_is_refused(tmp_path: Path, name: str) -> None:
    release = _zip(_release(tmp_path / "rel"), tmp_path / "r.zip", {name: _rule(NC, "x", "stable")})
    store = ContentStore(tmp_path / "content")
    with pytest.raises(ContentError, match="outside the store"):
        store.import_release(release)
    assert not (tmp_path / "evil.yml").exists() and store.packs() == {}
    assert not [p for p in (tmp_path / "content").rglob("*.yml")]


def test_bad_sources_are_refused_by_name(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    with pytest.raises(ContentError, match="no such file"):
        store.import_release(tmp_path / "missing.zip")
    (tmp_path / "notzip.zip").write_text("plain text")
    with pytest.raises(ContentError, match="not a zip file"):
        store.import_release(tmp_path / "notzip.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ContentError, match="no Sigma rule files"):
        store.import_release(tmp_path / "empty")
    with pytest.raises(ContentError, match="pack name"):
        store.import_release(_release(tmp_path / "rel"), pack="../x")


def test_rules_and_folders_switch_store_wide_and_per_device_group(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    store.import_release(_release(tmp_path / "rel"))
    assert store.set_enabled([CURL], True) == [f"rule {CURL}"]
    assert store.set_enabled(["sigmahq/rules/linux/net"], False, group="web") == [
        "folder sigmahq/rules/linux/net"]
    store.set_enabled(["sigmahq/rules/linux"], False, group="db")
    store.set_enabled([WGET], True, group="db")  # a rule beats its folder
    store.set_level(NC, "critical", group="db")
    store.set_level(WGET, "medium")

    def on(group: str | None) -> set[str]:
        return {e.rule_id for e in store.entries(group) if e.enabled}

    assert on(None) == {NC, CURL, WGET}
    assert on("web") == {WGET}  # the group's folder setting beats the store-wide rule setting
    assert on("db") == {WGET}
    assert on("nobody") == on(None)  # a group without settings runs the store-wide set
    assert _fired(store, "nc") == [(NC, "high")]
    assert _fired(store, "nc", "web") == [] and _fired(store, "curl", "web") == []
    assert _fired(store, "wget") == [(WGET, "medium")] and _fired(store, "wget", "db") == [(WGET, "medium")]
    store.set_enabled([NC], True, group="db")
    assert _fired(store, "nc", "db") == [(NC, "critical")]
    assert store.groups() == ["db", "web"]
    state = json.loads((tmp_path / "content/store.json").read_text())
    assert state["policy"]["groups"]["web"]["folders"] == {"sigmahq/rules/linux/net": False}
    with pytest.raises(ContentError, match="neither a rule id nor a folder"):
        store.set_enabled(["sigmahq/rules/mac"], True)
    with pytest.raises(ContentError, match="use one of"):
        store.set_level(NC, "severe")
    with pytest.raises(ContentError, match="no rule"):
        store.set_level("nope", "low")


def test_the_cli_imports_lists_and_switches(tmp_path: Path) -> None:
    release = _zip(_release(tmp_path / "rel"), tmp_path / "sigma_core-r2024-09-02.zip")
    data = ["--data-dir", str(tmp_path / "data")]
    run = CliRunner().invoke
    missing = run(app, ["rules", "list", *data])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    (tmp_path / "data").mkdir()
    imported = run(app, ["rules", "import", "--from", str(release), *data])
    assert imported.exit_code == 0, imported.output
    assert "imported sigmahq r2024-09-02: 4 files, 3 rules loaded, 1 failed" in imported.stdout
    assert "broken.yml:14:7 " in imported.stdout
    listed = run(app, ["rules", "list", *data])
    assert listed.exit_code == 0 and "3 rules, 2 on, 1 off (store-wide); 1 did not load" in listed.stdout
    assert f"off  {CURL}  high          experimental sigmahq r2024-09-02  rules/linux/net/curl.yml" in listed.stdout
    assert "broken.yml:14:7 " in listed.stdout  # the rules that did not load, where they are broken
    switched = run(app, ["rules", "disable", "sigmahq/rules/linux", "-g", "web", *data])
    assert switched.exit_code == 0 and "disabled folder sigmahq/rules/linux for device group web" in switched.stdout
    web = run(app, ["rules", "list", "-g", "web", "--state", "enabled", *data])
    assert "0 on, 3 off (device group web)" in web.stdout and f"on   {NC}" not in web.stdout
    assert run(app, ["rules", "set-level", NC, "critical", *data]).exit_code == 0
    assert f"on   {NC}  critical" in run(app, ["rules", "list", *data]).stdout
    unknown = run(app, ["rules", "enable", "nope", *data])
    assert unknown.exit_code == 2 and "neither a rule id nor a folder" in unknown.stderr
    again = run(app, ["rules", "import", "--from", str(release), *data])
    assert again.exit_code == 2 and "use `vigil rules update --from`" in again.stderr
    same = run(app, ["rules", "update", "--from", str(release), *data])
    assert same.exit_code == 0 and "already in the store" in same.stdout


def test_up_rules_from_imports_at_first_start_only(tmp_path: Path) -> None:
    from io import StringIO

    from rich.console import Console

    from vigil.commands.rules import import_at_first_start

    def start(source: Path) -> str:
        out = StringIO()
        import_at_first_start(tmp_path / "data", source, Console(file=out, width=300))
        return out.getvalue()

    release = _zip(_release(tmp_path / "rel"), tmp_path / "sigma_core-r2024-09-02.zip")
    assert "imported sigmahq r2024-09-02 (3 rules, 1 did not load" in start(release)
    assert "already imported" in start(release)  # a restart keeps what the operator has
    assert ContentStore(tmp_path / "data/content").packs()["sigmahq"]["current"] == "r2024-09-02"
    fresh = tmp_path / "other"
    out = StringIO()
    import_at_first_start(fresh, tmp_path / "missing.zip", Console(file=out, width=300))
    assert "not imported" in out.getvalue() and "no such file" in out.getvalue()  # the server starts anyway
    help_text = CliRunner().invoke(app, ["up", "--help"]).stdout
    assert "--rules-from" in help_text


def test_a_release_downloads_from_its_url_through_the_zip_path(tmp_path: Path) -> None:
    import http.server
    import threading

    release = _zip(_release(tmp_path / "rel"), tmp_path / "sigma_core.zip")
    served = {"/SigmaHQ/sigma/releases/download/r2024-09-02/sigma_core.zip": release.read_bytes()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/latest":  # the release page redirects to the file, as GitHub's does
                self.send_response(302)
                self.send_header("Location", next(iter(served)))
                self.end_headers()
                return
            body = served.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        store = ContentStore(tmp_path / "content")
        report = store.import_from(f"{base}/latest")
        assert (report.version, report.rules, len(report.errors)) == ("r2024-09-02", 3, 1)
        assert store.entries()[0].source == f"{base}/latest"
        with pytest.raises(ContentError, match="answered 404"):
            store.import_from(f"{base}/missing.zip", pack="other")
        with pytest.raises(ContentError, match="only https"):
            store.import_from("http://example.org/r.zip", pack="other")
        (tmp_path / "data").mkdir()
        cli = CliRunner().invoke(app, ["rules", "import", "--from", f"{base}/latest", "--data-dir",
                                       str(tmp_path / "data")])
        assert cli.exit_code == 0 and "imported sigmahq r2024-09-02" in cli.stdout, cli.output
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
