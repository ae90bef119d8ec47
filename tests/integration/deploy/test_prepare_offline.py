"""Prepare before Set up: a plan file filled and signed with no server, then `vigil setup --plan` applies it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from tests.integration.server.rbac_support import admin
from tests.support import VigilServer
from tests.unit.core.test_plan import complete
from vigil.cli import app
from vigil.config import load_settings
from vigil.core.plan import Ring
from vigil.core.rbac import ADMIN_ROLE_NAME
from vigil.deploy import plan as deployment
from vigil.deploy import plan_file
from vigil.store import groups, plans, rbac

runner = CliRunner()


def vigil(*args: str, ok: bool = True) -> str:
    r = runner.invoke(app, list(args))
    if ok:
        assert r.exit_code == 0, (args, r.output, r.exception)
    else:
        assert r.exit_code != 0, (args, r.output)
        # A CommandError reaches main() (which prints it) as the runner's exception.
        return r.output + str(r.exception or "")
    return r.output


@pytest.fixture()
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine with no Vigil server: the data directory does not exist."""
    monkeypatch.delenv(plan_file.ENV_VAR, raising=False)
    monkeypatch.setenv("VIGIL_DATA_DIR", str(tmp_path / "no-server"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def filled(tmp: Path) -> Path:
    f = tmp / "filled.yml"
    f.write_text(yaml.safe_dump(complete(), sort_keys=False, allow_unicode=True))
    return f


def test_prepare_without_a_server_then_setup_applies_the_signed_plan(offline: Path, tmp_path: Path) -> None:
    out = vigil("plan", "init", "--organization", "ACME")  # no --plan: the default file, as documented
    assert "vigil-plan.yml" in out and not (tmp_path / "no-server").exists()
    assert "gap(s)" in vigil("plan", "validate", ok=False)
    vigil("plan", "edit", "--file", str(filled(tmp_path)))
    assert "The plan is complete." in vigil("plan", "validate")
    vigil("plan", "keygen", "-o", "ada.key")
    vigil("plan", "keygen", "-o", "ben.key")
    assert "Still missing: cdoc@acme.test" in vigil(
        "plan", "sign", "--key", "ada.key", "--email", "ciso@acme.test", "--name", "Ada Lovelace")
    assert "Still missing: nobody" in vigil("plan", "sign", "--key", "ben.key", "--email", "cdoc@acme.test")
    # A reviewer (R) cannot sign off; a signer needs their key.
    vigil("plan", "keygen", "-o", "cy.key")
    assert "not a sign-off (SO) stakeholder" in vigil("plan", "sign", "--key", "cy.key", "--email", "arch@acme.test",
                                                      ok=False)
    md = vigil("plan", "export", "--format", "md")
    assert "Ada Lovelace" in md and "pending" not in md
    pf = plan_file.load(tmp_path / "vigil-plan.yml")
    assert [v.version for v in pf.versions] == [1, 2] and len(pf.signatures) == 2
    assert not (tmp_path / "no-server").exists()

    # Set up on another data directory (another machine) with the prepared file.
    server_dir = tmp_path / "server"
    out = vigil("setup", "--data-dir", str(server_dir), "--plan", str(tmp_path / "vigil-plan.yml"))
    assert "2 sign-off(s)" in out and "production onboarding is open" in out
    settings = load_settings(server_dir)
    engine = sa.create_engine(settings.db_url)
    try:
        with engine.connect() as conn:
            st = deployment.state(conn)
            assert st is not None and st.gate_open and st.version == 2 and st.digest == pf.digest
            history = plans.versions(conn)
            assert [(v.version, v.digest, v.created_by) for v in history] == [
                (v.version, v.digest, v.created_by) for v in pf.versions]
            sigs = {s.email: s for s in plans.signoffs(conn)}
            assert sigs["ciso@acme.test"].signer_name == "Ada Lovelace"
            assert sigs["ciso@acme.test"].signature == pf.signatures[0].signature
            assert sigs["cdoc@acme.test"].public_key == pf.signatures[1].public_key
            # The applied roles, device groups and rings are the plan's.
            assert rbac.get_mode(conn).value == st.plan.mode
            roles = {r.name: r for r in rbac.list_roles(conn) if r.name != ADMIN_ROLE_NAME}
            assert set(roles) == {r.name for r in st.plan.roles}
            for r in st.plan.roles:
                assert sorted(p.value for p in roles[r.name].permissions) == sorted(r.permissions)
                assert sorted(roles[r.name].user_groups) == sorted(r.user_groups)
            made = {g.name: g for g in groups.list_groups(conn) if not g.is_default}
            assert {g.name: g.rank for g in st.plan.device_groups} == {n: g.rank for n, g in made.items()}
            for ring in Ring:
                assert st.plan.ring_group(ring) in made
            actions = {e for (e,) in conn.execute(sa.text("select action from audit_log"))}
            assert actions >= {"plan.import", "plan.apply"}
    finally:
        engine.dispose()

    # Onboard: the CLI enables the Evaluate ring's components in the plan's order, through the same service.
    data = ("--data-dir", str(server_dir))
    step = json.loads(vigil("plan", "enable-next", *data, "--ring", "Evaluate", "--output", "json"))
    assert (step["component"], step["state"], step["groups"][0]["outcome"]) == ("TVM", "on", "nothing to push")
    step = json.loads(vigil("plan", "enable-next", *data, "--ring", "Evaluate", "--output", "json"))
    assert (step["component"], step["before"], step["state"]) == ("NGP", "off", "audit")
    assert step["groups"] == [{"group": "Ring – Evaluate", "outcome": "applied", "detail": "antivirus mode passive",
                               "devicesUpdated": 0}]
    out = vigil("plan", "enable-next", *data, "--ring", "Evaluate")
    assert "NGP in the Evaluate ring: audit → on." in out and "Ring – Evaluate: applied — antivirus mode block" in out
    r = runner.invoke(app, ["plan", "enable-next", *data, "--ring", "Full"])
    assert getattr(r.exception, "exit_code", None) == 5, r.output  # main() exits with it: a plan refusal
    assert "TVM must reach on in the Pilot ring first" in str(r.exception)
    shown = json.loads(vigil("av", "policy", "show", *data, "--output", "json"))
    assert shown["groups"] == {"Ring – Evaluate": {"mode": "block"}} and "mode" not in shown["global"]


def test_a_hand_edit_voids_signatures_and_a_forged_one_is_refused(offline: Path, tmp_path: Path) -> None:
    path = tmp_path / "acme-plan.yml"
    vigil("plan", "init", "--plan", str(path))
    vigil("plan", "edit", "--plan", str(path), "--file", str(filled(tmp_path)))
    vigil("plan", "keygen", "-o", "ada.key")
    vigil("plan", "sign", "--plan", str(path), "--key", "ada.key", "--email", "ciso@acme.test")
    text = path.read_text()
    # Edited by hand: a new version, and Ada's sign-off of the old content no longer counts.
    path.write_text(text.replace("Splunk", "Elastic", 1))
    pf = plan_file.load(path)
    assert not pf.recorded and pf.version == 3 and pf.state().signoffs.signed == ()
    # A record whose signature was altered does not verify: validate reports it and setup refuses.
    sig = pf.signatures[0].signature
    path.write_text(text.replace(sig, ("A" if sig[0] != "A" else "B") + sig[1:]))
    assert "does not verify" in vigil("plan", "validate", "--plan", str(path), ok=False)
    out = vigil("setup", "--data-dir", str(tmp_path / "server"), "--plan", str(path), ok=False)
    assert "cannot be applied" in out
    assert not (tmp_path / "server").exists()


def test_validate_advises_on_a_reordered_plan_and_refuses_one_without_edr(offline: Path, tmp_path: Path) -> None:
    d = complete()
    d["adoption"] = [a for a in d["adoption"] if a["component"] != "NGP"]
    for a in d["adoption"]:
        a["rank"] = {"ASR": 2, "TVM": 3, "AIR": 4}.get(a["component"], a["rank"])
    f = tmp_path / "reordered.yml"
    f.write_text(yaml.safe_dump(d, sort_keys=False, allow_unicode=True))
    out = vigil("plan", "validate", "--file", str(f))
    assert "The plan is complete." in out
    assert "differs from Microsoft's recommended EDR → TVM → NGP → ASR → AIR" in out
    assert "TVM is recommended at rank 2 because" in out and "ASR needs NGP" in out
    path = tmp_path / "p.yml"
    vigil("plan", "init", "--plan", str(path))
    vigil("plan", "edit", "--plan", str(path), "--file", str(f))
    md = vigil("plan", "export", "--plan", str(path))
    assert "| NGP — Next-generation protection (antivirus) | removed | 3 |" in md
    assert "| MTE — Managed threat hunting (Microsoft Threat Experts) | not applicable | not applicable |" in md

    d["adoption"] = [a for a in d["adoption"] if a["component"] != "EDR"]
    f.write_text(yaml.safe_dump(d, sort_keys=False, allow_unicode=True))
    out = vigil("plan", "validate", "--file", str(f), ok=False)
    assert "adoption: EDR cannot be removed: it is the sensor everything else runs on" in out


def test_the_api_imports_a_prepared_signed_plan(offline: Path, tmp_path: Path, sqlite_server: VigilServer) -> None:
    path = tmp_path / "prepared.yml"
    vigil("plan", "init", "--plan", str(path))
    vigil("plan", "edit", "--plan", str(path), "--file", str(filled(tmp_path)))
    vigil("plan", "keygen", "-o", "ada.key")
    vigil("plan", "sign", "--plan", str(path), "--key", "ada.key", "--email", "ciso@acme.test")
    text = path.read_text()
    sig = plan_file.load(path).signatures[0].signature
    with admin(sqlite_server) as c:
        forged = text.replace(sig, ("A" if sig[0] != "A" else "B") + sig[1:])
        r = c.post("/api/plan/import", json={"file": forged})
        assert r.status_code == 409 and "does not verify" in r.json()["detail"]
        assert c.get("/api/plan").json()["exists"] is False  # nothing half-imported
        r = c.post("/api/plan/import", json={"file": text, "name": "prepared.yml"})
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["version"] == 2 and st["signoff"]["signed"] == ["ciso@acme.test"] and not st["gateOpen"]
        assert "+ role 'Stakeholder'" in st["changes"]
        names = {g["name"] for g in c.get("/api/machinegroups").json()["value"]}
        assert {"Ring – Evaluate", "Ring – Pilot", "Ring – Full"} <= names
        signer = next(s for s in st["signatures"] if s["email"] == "ciso@acme.test")
        assert signer["signer_name"] == "Ada CISO" and signer["signature"] == sig
