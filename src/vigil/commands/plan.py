"""`vigil plan`: the deployment plan from the command line (init, show, edit, validate, sign, status, …)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.console import Console

from vigil.app import rollout
from vigil.commands._common import CommandError, DataDir, local_principal, local_store, translated
from vigil.commands._common import settings_for as _settings
from vigil.commands._common import whoami as _whoami
from vigil.config import Settings, data_dir_from_env
from vigil.core.clock import SystemClock
from vigil.core.plan import Plan, PlanFormatError, Ring, adoption_warnings, validate
from vigil.deploy import plan as deployment
from vigil.deploy import plan_file
from vigil.deploy.plan_export import plan_html, plan_markdown
from vigil.deploy.signing import create_key, key_fingerprint, load_private_key
from vigil.store import db
from vigil.store.users import verify_login
from vigil.wire import public_key_text

app = typer.Typer(help="The deployment plan (Prepare): stakeholders, environment, RBAC, adoption order, rings.",
                  no_args_is_help=True)
out = Console(soft_wrap=True)

PlanOpt = Annotated[Path | None, typer.Option(
    "--plan", help="work on this plan file, no server needed (default: $VIGIL_PLAN, else ./vigil-plan.yml "
    "when no server is set up)")]


def _file(data_dir: Path | None, plan: Path | None) -> Path | None:
    """The plan file to work on, or None for the server's plan.

    Prepare comes before Set up: with --plan (or $VIGIL_PLAN), or when no server is set up and --data-dir is
    not given, the plan lives in a file.
    """
    if plan is not None or os.environ.get(plan_file.ENV_VAR):
        return plan_file.resolve(plan)
    if data_dir is None and not (data_dir_from_env(None) / "vigil.toml").exists():
        return plan_file.DEFAULT_PATH
    return None


def _load_file(path: Path) -> plan_file.PlanFile:
    try:
        return plan_file.load(path)
    except PlanFormatError as e:
        raise CommandError(f"{path}: the plan is not well formed:\n" + "\n".join(f"  {g}" for g in e.gaps)) from None
    except deployment.PlanError as e:
        raise CommandError(str(e)) from None


@contextmanager
def _db(data_dir: Path | None, write: bool = False) -> Iterator[sa.Connection]:
    engine = db.make_engine(_settings(data_dir).db_url)
    try:
        db.upgrade(engine)
        with engine.begin() if write else engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _state(conn: sa.Connection) -> deployment.PlanState:
    st = deployment.state(conn)
    if st is None:
        raise CommandError("there is no deployment plan yet; run `vigil plan init`")
    return st


def _actor() -> str:
    return f"cli:{_whoami()}"


def _print_gaps(gaps: list[str]) -> None:
    for g in gaps:
        out.print(f"  [yellow]gap[/] {g}", highlight=False)


def _print_warnings(plan: Plan | None) -> None:
    for g in adoption_warnings(plan) if plan is not None else []:
        out.print(f"  [cyan]advice[/] {g}", highlight=False)


@app.command()
def init(
    data_dir: DataDir = None, plan: PlanOpt = None,
    organization: Annotated[str, typer.Option(help="organization name")] = "Example organization",
) -> None:
    """Create the plan from Defender's template (stakeholders, tiers, adoption order, rings)."""
    path = _file(data_dir, plan)
    if path is not None:
        try:
            pf = plan_file.init(path, organization, _actor(), SystemClock().now())
        except deployment.PlanError as e:
            raise CommandError(str(e)) from None
        out.print(f"Created {path} (plan version {pf.version}) with {len(validate(pf.plan))} gap(s) to fill: "
                  f"`vigil plan edit --plan {path}`.")
        return
    try:
        with _db(data_dir, write=True) as conn:
            st = deployment.init(conn, _actor(), SystemClock().now(), organization)
    except deployment.PlanError as e:
        raise CommandError(str(e)) from None
    out.print(f"Created plan version {st.version} with {len(st.gaps)} gap(s) to fill: `vigil plan edit`.")


@app.command()
def show(data_dir: DataDir = None, plan: PlanOpt = None) -> None:
    """Print the current plan document (YAML)."""
    path = _file(data_dir, plan)
    if path is not None:
        typer.echo(_load_file(path).document, nl=False)
        return
    with _db(data_dir) as conn:
        typer.echo(_state(conn).document, nl=False)


def _save(data_dir: Path | None, text: str, path: Path | None = None) -> None:
    try:
        if path is not None:
            pf, added = plan_file.save(_load_file(path), text, _actor(), SystemClock().now())
            st = pf.state()
        else:
            with _db(data_dir, write=True) as conn:
                st, added = deployment.save(conn, text, _actor(), SystemClock().now())
    except PlanFormatError as e:
        raise CommandError("the plan is not well formed:\n" + "\n".join(f"  {g}" for g in e.gaps)) from None
    if added:
        out.print(f"Saved version {st.version}; earlier sign-offs no longer count.")
    else:
        out.print("No change.")
    _print_gaps([str(g) for g in st.gaps])


@app.command()
def edit(
    data_dir: DataDir = None, plan: PlanOpt = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="take the new plan from this YAML file")] = None,
) -> None:
    """Edit the plan in $EDITOR (or import --file); a changed plan is a new version."""
    path = _file(data_dir, plan)
    if file is not None:
        _save(data_dir, file.read_text(), path)
        return
    if path is not None:
        doc = _load_file(path).document
    else:
        with _db(data_dir) as conn:
            doc = _state(conn).document
    with tempfile.NamedTemporaryFile("w+", suffix=".yml", delete=False) as tmp:
        tmp.write(doc)
    try:
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        subprocess.run([*editor.split(), tmp.name], check=True)
        _save(data_dir, Path(tmp.name).read_text(), path)
    finally:
        os.unlink(tmp.name)


@app.command("validate")
def validate_cmd(
    data_dir: DataDir = None, plan: PlanOpt = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="validate this YAML file instead")] = None,
) -> None:
    """Report every gap in the plan with where it is; exit 1 when there is any."""
    path = _file(data_dir, plan)
    doc: Plan | None = None
    try:
        if file is not None:
            doc = deployment.load_yaml(file.read_text())
            gaps = [str(g) for g in validate(doc)]
        elif path is not None:
            pf = _load_file(path)
            doc, gaps = pf.plan, [str(g) for g in plan_file.check_importable(pf)]
        else:
            with _db(data_dir) as conn:
                st = _state(conn)
                doc, gaps = st.plan, [str(g) for g in st.gaps]
    except PlanFormatError as e:
        gaps = [str(g) for g in e.gaps]
    _print_warnings(doc)
    if gaps:
        _print_gaps(gaps)
        out.print(f"{len(gaps)} gap(s).")
        raise typer.Exit(1)
    out.print("The plan is complete.")


@app.command()
def sign(
    data_dir: DataDir = None, plan: PlanOpt = None,
    user: Annotated[str, typer.Option("--user", "-u", help="your Vigil user name (its e-mail names you)")] = "",
    key: Annotated[Path | None, typer.Option(help="plan file: your Ed25519 private key (`vigil plan keygen`)")] = None,
    email: Annotated[str, typer.Option(help="plan file: your e-mail, as the plan lists you")] = "",
    name: Annotated[str, typer.Option(help="plan file: your name (default: as the plan lists you)")] = "",
) -> None:
    """Sign off the current version as an SO stakeholder: with your key on a plan file, or your account."""
    path = _file(data_dir, plan)
    if path is not None:
        _sign_file(path, key, email, name)
        return
    if not user:
        user = typer.prompt("User name")
    password = os.environ.get("VIGIL_PASSWORD") or typer.prompt("Password", hide_input=True)
    now = SystemClock().now()
    with _db(data_dir, write=True) as conn:
        who = verify_login(conn, user, password)
        if who is None:
            raise CommandError("wrong user name or password")
        try:
            st = deployment.sign(conn, who, now)
        except deployment.PlanError as e:
            raise CommandError(str(e) + "".join(f"\n  {g}" for g in e.gaps)) from None
    out.print(f"Signed version {st.version}. Still missing: {', '.join(st.signoffs.missing) or 'nobody'}.")


def _sign_file(path: Path, key: Path | None, email: str, name: str) -> None:
    if key is None or not email:
        raise CommandError("signing a plan file needs --key (your Ed25519 private key) and --email")
    try:
        private = load_private_key(key)
    except ValueError as e:
        raise CommandError(str(e)) from None
    try:
        pf = plan_file.sign(_load_file(path), private, email, SystemClock().now(), _actor(), name or None)
    except deployment.PlanError as e:
        raise CommandError(str(e) + "".join(f"\n  {g}" for g in e.gaps)) from None
    st = pf.state()
    out.print(f"Signed version {st.version} of {path} as {email} (key {pf.signatures[-1].fingerprint}). "
              f"Still missing: {', '.join(st.signoffs.missing) or 'nobody'}.")


@app.command()
def keygen(
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write your private key (kept 0600)")],
) -> None:
    """Make an Ed25519 key for signing a plan file; prints the public key others can check signatures with."""
    try:
        create_key(output)
    except FileExistsError:
        raise CommandError(f"{output} exists already; it is your key — keep it, or choose another path") from None
    pub = public_key_text(load_private_key(output))
    out.print(f"Wrote {output}. Public key {pub} (fingerprint {key_fingerprint(pub)}).")


@app.command()
def status(data_dir: DataDir = None, plan: PlanOpt = None) -> None:
    """Phase, version, sign-offs, gate, ring and its exit criteria."""
    path = _file(data_dir, plan)
    if path is not None:
        st = _load_file(path).state()
        out.print(f"Plan file {path}: version {st.version} · phase Prepare (no server yet)")
        out.print(f"Sign-off: {len(st.signoffs.signed)} of {len(st.signoffs.required)} "
                  f"(missing: {', '.join(st.signoffs.missing) or 'none'})")
        out.print(f"Next: `vigil setup --plan {path}` sets up the server and applies the plan.")
        _print_gaps([str(g) for g in st.gaps])
        return
    with _db(data_dir) as conn:
        st = _state(conn)
        criteria = deployment.ring_criteria(conn, st, SystemClock().now())
    out.print(f"Plan version {st.version} · phase {st.phase} · ring {st.ring.value}")
    out.print(f"Sign-off: {len(st.signoffs.signed)} of {len(st.signoffs.required)} "
              f"(missing: {', '.join(st.signoffs.missing) or 'none'})")
    evaluate = st.plan.ring_group(Ring.EVALUATE)
    out.print("Production onboarding: " + ("open" if st.gate_open else f"gated (Evaluate ring only: {evaluate})"))
    out.print(f"Components on: {', '.join(st.components)} of {' → '.join(st.plan.adoption_order())}"
              + (f" (removed: {', '.join(st.plan.removed)})" if st.plan.removed else ""))
    for ring_name, row in st.ring_components.items():
        out.print(f"  {ring_name}: " + ", ".join(f"{c} {v}" for c, v in row.items()), highlight=False)
    for c in criteria:
        out.print(f"  [{'green' if c.met else 'red'}]{'met' if c.met else 'not met'}[/] {c.name}: {c.value} "
                  f"(target {c.target}) — {c.detail}", highlight=False)
        for f in c.failing:
            out.print(f"      {f['name']} ({f['id']}): {f['why']}", highlight=False)
    for o in st.overrides:
        out.print(f"  [yellow]override[/] {o.at:%Y-%m-%d %H:%M} UTC {o.actor}: {o.label} ({o.target}, plan version "
                  f"{o.plan_version or '?'}) — {o.reason}", highlight=False)
    _print_gaps([str(g) for g in st.gaps])


@app.command()
def export(
    data_dir: DataDir = None, plan: PlanOpt = None,
    format: Annotated[str, typer.Option("--format", help="md, html or yaml")] = "md",
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Render the plan for signing: Markdown or HTML (or the YAML document)."""
    path = _file(data_dir, plan)
    if path is not None:
        st = _load_file(path).state()
    else:
        with _db(data_dir) as conn:
            st = _state(conn)
    if format not in ("md", "html", "yaml"):
        raise CommandError(f"--format {format!r}: use md, html or yaml")
    text = plan_markdown(st) if format == "md" else plan_html(st) if format == "html" else st.document
    if output:
        output.write_text(text)
        out.print(f"Wrote {output}.")
    else:
        typer.echo(text, nl=False)


@app.command("apply")
def apply_cmd(
    data_dir: DataDir = None, yes: Annotated[bool, typer.Option("--yes", "-y", help="apply without asking")] = False
) -> None:
    """Create the roles, user groups and device groups the plan describes; shows the diff first."""
    if data_dir is None and not (data_dir_from_env(None) / "vigil.toml").exists():
        raise CommandError("there is no server to apply the plan to; `vigil setup --plan FILE` sets one up "
                           "and applies the plan file")
    with _db(data_dir) as conn:
        changes = deployment.diff(conn, _state(conn).plan)
    if not changes:
        out.print("Nothing to do: the server matches the plan.")
        return
    for c in changes:
        out.print(f"  {c}", highlight=False)
    if not yes and not typer.confirm("Apply these changes?"):
        raise typer.Exit(1)
    try:
        with _db(data_dir, write=True) as conn:
            done = deployment.apply(conn, _actor(), SystemClock().now())
    except deployment.PlanError as e:
        raise CommandError(str(e) + "".join(f"\n  {g}" for g in e.gaps)) from None
    out.print(f"Applied {len(done)} change(s).")


def check_plan_file(path: Path) -> plan_file.PlanFile:
    """`vigil setup --plan`: refuse a plan file with gaps or signatures that do not verify before setting up."""
    pf = _load_file(path)
    problems = plan_file.check_importable(pf)
    if problems:
        _print_gaps([str(g) for g in problems])
        raise CommandError(f"{path} cannot be applied: {len(problems)} problem(s); see `vigil plan validate "
                           f"--plan {path}`")
    return pf


def apply_plan_file(settings: Settings, pf: plan_file.PlanFile) -> None:
    """Carry the prepared plan into the set-up server and apply it, in one transaction."""
    now = SystemClock().now()
    engine = db.make_engine(settings.db_url)
    try:
        with engine.begin() as conn:
            st = plan_file.import_into(conn, pf, _actor(), now)
            changes = deployment.apply(conn, _actor(), now)
    except deployment.PlanError as e:
        raise CommandError(str(e) + "".join(f"\n  {g}" for g in e.gaps)) from None
    finally:
        engine.dispose()
    out.print(f"Plan {pf.path}: version {st.version} carried over with {len(st.signatures)} sign-off(s); "
              f"applied {len(changes)} change(s).")
    for c in changes:
        out.print(f"  {c}", highlight=False)
    if st.gate_open:
        out.print("Every SO stakeholder signed: production onboarding is open.")
    else:
        out.print(f"Production onboarding stays gated until {', '.join(st.signoffs.missing)} sign(s) "
                  f"(`vigil plan sign`).")


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


@app.command("enable-next")
def enable_next(
    data_dir: DataDir = None,
    ring: Annotated[Ring | None, typer.Option(help="the ring (default: the current one)")] = None,
    override_reason: Annotated[str | None, typer.Option(
        help="pass the previous ring's unmet exit criteria (audited)")] = None,
    output: Annotated[Output, typer.Option("--output", help="table or json (on stdout)")] = Output.TABLE,
) -> None:
    """Step the ring's next component in the adoption order (Audit/passive first, then on) and push its policy
    to the ring's device groups, signed; exit 1 when a group's push failed (the ring's state is then failed)."""
    with local_store(_settings(data_dir), migrate=True, sign_actions=True) as store, translated():
        done = rollout.enable_next(store, SystemClock(), local_principal(), ring, override_reason)
    if output is Output.JSON:
        typer.echo(json.dumps(done.as_json(), indent=2, ensure_ascii=False))
    else:
        step = done.step
        out.print(f"{step.component.value} in the {step.ring.value} ring: {step.before.value} → {done.state.value}.",
                  highlight=False)
        for g in done.groups:
            out.print(f"  {g.group}: {g.outcome} — {g.detail}"
                      + (f" ({g.devices_updated} device(s) sent the signed policy)" if g.outcome == "applied" else ""),
                      highlight=False)
    if done.state.value == "failed":
        raise typer.Exit(1)
