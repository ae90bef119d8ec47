"""`vigil plan`: the deployment plan from the command line (init, show, edit, validate, sign, status, …)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.console import Console

from vigil.commands._common import CommandError, DataDir
from vigil.commands._common import settings_for as _settings
from vigil.commands._common import whoami as _whoami
from vigil.core.clock import SystemClock
from vigil.core.plan import PlanFormatError, Ring, validate
from vigil.deploy import plan as deployment
from vigil.deploy.plan_export import plan_html, plan_markdown
from vigil.store import db
from vigil.store.users import verify_login

app = typer.Typer(help="The deployment plan (Prepare): stakeholders, environment, RBAC, adoption order, rings.",
                  no_args_is_help=True)
out = Console(soft_wrap=True)



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


@app.command()
def init(
    data_dir: DataDir = None,
    organization: Annotated[str, typer.Option(help="organization name")] = "Example organization",
) -> None:
    """Create the plan from Defender's template (stakeholders, tiers, adoption order, rings)."""
    try:
        with _db(data_dir, write=True) as conn:
            st = deployment.init(conn, _actor(), SystemClock().now(), organization)
    except deployment.PlanError as e:
        raise CommandError(str(e)) from None
    out.print(f"Created plan version {st.version} with {len(st.gaps)} gap(s) to fill: `vigil plan edit`.")


@app.command()
def show(data_dir: DataDir = None) -> None:
    """Print the current plan document (YAML)."""
    with _db(data_dir) as conn:
        typer.echo(_state(conn).document, nl=False)


def _save(data_dir: Path | None, text: str) -> None:
    try:
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
    data_dir: DataDir = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="take the new plan from this YAML file")] = None,
) -> None:
    """Edit the plan in $EDITOR (or import --file); a changed plan is a new version."""
    if file is not None:
        _save(data_dir, file.read_text())
        return
    with _db(data_dir) as conn:
        doc = _state(conn).document
    with tempfile.NamedTemporaryFile("w+", suffix=".yml", delete=False) as tmp:
        tmp.write(doc)
    try:
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        subprocess.run([*editor.split(), tmp.name], check=True)
        _save(data_dir, Path(tmp.name).read_text())
    finally:
        os.unlink(tmp.name)


@app.command("validate")
def validate_cmd(
    data_dir: DataDir = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="validate this YAML file instead")] = None,
) -> None:
    """Report every gap in the plan with where it is; exit 1 when there is any."""
    try:
        if file is not None:
            gaps = [str(g) for g in validate(deployment.load_yaml(file.read_text()))]
        else:
            with _db(data_dir) as conn:
                gaps = [str(g) for g in _state(conn).gaps]
    except PlanFormatError as e:
        gaps = [str(g) for g in e.gaps]
    if gaps:
        _print_gaps(gaps)
        out.print(f"{len(gaps)} gap(s).")
        raise typer.Exit(1)
    out.print("The plan is complete.")


@app.command()
def sign(
    data_dir: DataDir = None,
    user: Annotated[str, typer.Option("--user", "-u", help="your Vigil user name (its e-mail names you)")] = "",
) -> None:
    """Sign off the current version as an SO stakeholder (asks for your password)."""
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


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Phase, version, sign-offs, gate, ring and its exit criteria."""
    with _db(data_dir) as conn:
        st = _state(conn)
        criteria = deployment.ring_criteria(conn, st, SystemClock().now())
    out.print(f"Plan version {st.version} · phase {st.phase} · ring {st.ring.value}")
    out.print(f"Sign-off: {len(st.signoffs.signed)} of {len(st.signoffs.required)} "
              f"(missing: {', '.join(st.signoffs.missing) or 'none'})")
    evaluate = st.plan.ring_group(Ring.EVALUATE)
    out.print("Production onboarding: " + ("open" if st.gate_open else f"gated (Evaluate ring only: {evaluate})"))
    out.print(f"Components on: {', '.join(st.components)} of {' → '.join(st.plan.adoption_order())}")
    for c in criteria:
        out.print(f"  [{'green' if c.met else 'red'}]{'met' if c.met else 'not met'}[/] {c.name}: {c.detail}",
                  highlight=False)
    _print_gaps([str(g) for g in st.gaps])


@app.command()
def export(
    data_dir: DataDir = None,
    format: Annotated[str, typer.Option("--format", help="md, html or yaml")] = "md",
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Render the plan for signing: Markdown or HTML (or the YAML document)."""
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
