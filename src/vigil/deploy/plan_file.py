"""A deployment plan kept in a file: the Prepare phase before any server exists.

The file holds two YAML documents. The first is the plan as written (the same document `vigil plan show`
prints on a server); the second, after ``RECORD_MARKER``, is the record Vigil keeps: every version with its
content digest, and the stakeholders' sign-offs, each with their name, e-mail, Ed25519 public key and a
detached signature over the version's digest. Editing the plan by hand is fine: the next `vigil plan`
command that writes records the new content as a new version, and sign-offs of earlier content stop counting
because they sign its digest. `vigil setup --plan FILE` carries the versions and sign-offs into the server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigil.core.plan import Gap, Plan, Ring, default_plan, plan_digest, signoff_status, validate
from vigil.deploy.plan import PlanError, PlanState, dump_yaml, load_yaml, state
from vigil.deploy.signing import key_fingerprint, sign_detached, verify_detached
from vigil.store import audit, plans
from vigil.store.audit import Change
from vigil.store.plans import Signoff, StoredPlan
from vigil.wire import public_key_text

ENV_VAR = "VIGIL_PLAN"
DEFAULT_PATH = Path("vigil-plan.yml")
RECORD_MARKER = "--- # Vigil plan record: versions and sign-offs, kept by `vigil plan`; do not edit below this line"
RECORD_FORMAT = 1


class PlanFileError(PlanError):
    """A plan file that cannot be read or written as asked; the message names the file and what is wrong."""


def signoff_message(digest: str, email: str) -> bytes:
    """What a stakeholder's signature covers: the plan content (its digest) and who signs it."""
    return f"vigil-plan-signoff:1\ndigest:{digest}\nemail:{email.lower()}\n".encode()


@dataclass(frozen=True)
class FileSignature:
    version: int
    digest: str
    email: str
    name: str
    role: str
    public_key: str
    signature: str
    signed_at: datetime

    @property
    def valid(self) -> bool:
        return verify_detached(self.public_key, signoff_message(self.digest, self.email), self.signature)

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def as_signoff(self) -> Signoff:
        return Signoff(self.version, self.digest, self.email.lower(), self.name[:128], self.signed_at,
                       self.name, self.public_key, self.signature)


@dataclass
class PlanFile:
    path: Path
    document: str
    plan: Plan
    versions: list[StoredPlan] = field(default_factory=list)
    signatures: list[FileSignature] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return plan_digest(self.plan)

    @property
    def recorded(self) -> bool:
        """False when the plan was edited by hand since the last recorded version."""
        return bool(self.versions) and self.versions[-1].digest == self.digest

    @property
    def version(self) -> int:
        if self.recorded:
            return self.versions[-1].version
        return (self.versions[-1].version + 1) if self.versions else 1

    def bad_signatures(self) -> list[FileSignature]:
        return [s for s in self.signatures if not s.valid]

    def state(self) -> PlanState:
        """The plan as a server would show it (ring Evaluate, no component on yet): for export and status."""
        good = [s for s in self.signatures if s.valid]
        status = signoff_status(self.plan, self.version, self.digest, [(s.version, s.digest, s.email) for s in good])
        return PlanState(self.version, self.document, self.digest, self.plan, tuple(validate(self.plan)), status,
                         tuple(s.as_signoff() for s in good), Ring.EVALUATE, ())

    def with_current_recorded(self, actor: str, now: datetime) -> PlanFile:
        if self.recorded:
            return self
        v = StoredPlan(self.version, self.document, self.digest, now, actor)
        return replace(self, versions=[*self.versions, v])


def resolve(path: Path | None) -> Path:
    """``--plan`` if given, else $VIGIL_PLAN, else ./vigil-plan.yml."""
    if path is not None:
        return path
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH


def _split(text: str) -> tuple[str, str | None]:
    head, sep, tail = text.partition("\n" + RECORD_MARKER + "\n")
    if not sep and text.startswith(RECORD_MARKER + "\n"):
        return "", text[len(RECORD_MARKER) + 1:]
    return (head + "\n", tail) if sep else (text, None)


def _when(v: Any, where: str) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    try:
        d = datetime.fromisoformat(str(v))
    except ValueError:
        raise PlanFileError(f"{where}: {v!r} is not an ISO 8601 time", field=where) from None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _field(x: dict[str, Any], key: str, where: str, kind: type = str) -> Any:
    v = x.get(key)
    if not isinstance(v, kind) or isinstance(v, bool):
        raise PlanFileError(f"{where}.{key}: missing or not {'a whole number' if kind is int else 'text'}",
                            field=f"{where}.{key}")
    return v


def _read_record(text: str, path: Path) -> tuple[list[StoredPlan], list[FileSignature]]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PlanFileError(f"{path}: the record after the marker line is not valid YAML ({e})") from None
    if not isinstance(data, dict) or data.get("vigil_plan_record") != RECORD_FORMAT:
        raise PlanFileError(f"{path}: the record after the marker line is not a Vigil plan record (format 1)")
    versions, signatures = [], []
    for i, v in enumerate(data.get("versions") or []):
        at = f"versions[{i}]"
        if not isinstance(v, dict):
            raise PlanFileError(f"{path}: {at} must be a mapping", field=at)
        versions.append(StoredPlan(_field(v, "version", at, int), _field(v, "document", at),
                                   _field(v, "digest", at), _when(v.get("created_at"), f"{at}.created_at"),
                                   _field(v, "created_by", at)))
    for i, s in enumerate(data.get("signatures") or []):
        at = f"signatures[{i}]"
        if not isinstance(s, dict):
            raise PlanFileError(f"{path}: {at} must be a mapping", field=at)
        signatures.append(FileSignature(
            _field(s, "version", at, int), _field(s, "digest", at), _field(s, "email", at), _field(s, "name", at),
            str(s.get("role") or ""), _field(s, "public_key", at), _field(s, "signature", at),
            _when(s.get("signed_at"), f"{at}.signed_at")))
    return versions, signatures


def load(path: Path) -> PlanFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanFileError(f"{path} does not exist; run `vigil plan init --plan {path}`", field="plan") from None
    return parse(text, path)


def parse(text: str, path: Path) -> PlanFile:
    """A plan file's text (``path`` names it in messages: an upload has no file of its own)."""
    document, record = _split(text)
    plan = load_yaml(document)
    versions, signatures = _read_record(record, path) if record is not None else ([], [])
    return PlanFile(path, document, plan, versions, signatures)


def _record_yaml(pf: PlanFile) -> str:
    data = {
        "vigil_plan_record": RECORD_FORMAT,
        "versions": [{"version": v.version, "digest": v.digest, "created_at": v.created_at.isoformat(),
                      "created_by": v.created_by, "document": v.document} for v in pf.versions],
        "signatures": [{"version": s.version, "digest": s.digest, "email": s.email, "name": s.name, "role": s.role,
                        "public_key": s.public_key, "signature": s.signature, "signed_at": s.signed_at.isoformat()}
                       for s in pf.signatures],
    }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)


def write(pf: PlanFile) -> None:
    """Write the plan and its record at once (a temporary file renamed over the old one)."""
    doc = pf.document if pf.document.endswith("\n") else pf.document + "\n"
    text = doc + RECORD_MARKER + "\n" + _record_yaml(pf)
    tmp = pf.path.with_name(pf.path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, pf.path)


def init(path: Path, organization: str, actor: str, now: datetime) -> PlanFile:
    if path.exists():
        raise PlanFileError(f"{path} exists already; edit it with `vigil plan edit --plan {path}`", field="plan")
    plan = default_plan(organization)
    pf = PlanFile(path, dump_yaml(plan), plan).with_current_recorded(actor, now)
    write(pf)
    return pf


def save(pf: PlanFile, text: str, actor: str, now: datetime) -> tuple[PlanFile, bool]:
    """The new document as the next version (unless its content is unchanged); earlier sign-offs stop counting."""
    before = pf.with_current_recorded(actor, now)
    plan = load_yaml(text)
    new = replace(before, document=text, plan=plan)
    added = not new.recorded
    new = new.with_current_recorded(actor, now)
    write(new)
    return new, added


def sign(pf: PlanFile, key: Ed25519PrivateKey, email: str, now: datetime, actor: str,
         name: str | None = None) -> PlanFile:
    """``email``'s sign-off of the current content with their key: a detached signature over its digest."""
    gaps = validate(pf.plan)
    if gaps:
        raise PlanFileError(f"the plan has {len(gaps)} gap(s); fix them before signing", gaps=gaps)
    signer = next((s for s in pf.plan.signers if s.email.lower() == email.lower()), None)
    if signer is None:
        raise PlanFileError(f"{email} is not a sign-off (SO) stakeholder of the plan", field="email")
    pf = pf.with_current_recorded(actor, now)
    kept = [s for s in pf.signatures if not (s.version == pf.version and s.email.lower() == signer.email.lower())]
    pub = public_key_text(key)
    sig = FileSignature(pf.version, pf.digest, signer.email.lower(), (name or signer.name).strip(), signer.role, pub,
                        sign_detached(key, signoff_message(pf.digest, signer.email)), now)
    pf = replace(pf, signatures=[*kept, sig])
    write(pf)
    return pf


def check_importable(pf: PlanFile) -> list[Gap]:
    """What stops `vigil setup --plan` from taking this file: forged or damaged signatures, and gaps."""
    problems = [Gap(f"signatures ({s.name} <{s.email}>)", "the Ed25519 signature does not verify: the record was "
                    "altered or the signature was not made over this content") for s in pf.bad_signatures()]
    return problems + validate(pf.plan)



def import_into(conn: sa.Connection, pf: PlanFile, actor: str, now: datetime) -> PlanState:
    """Carry a prepared plan into a server: every version with its number, author and time, and the sign-offs.

    A server that has a plan already takes the file only when its current content is the same (the sign-offs
    are then added); anything else is refused rather than merged.
    """
    problems = check_importable(pf)
    if problems:
        raise PlanFileError(f"{pf.path} cannot be applied: {len(problems)} problem(s)", gaps=problems)
    pf = pf.with_current_recorded(actor, now)
    current = plans.current_plan(conn)
    if current is None:
        for v in pf.versions:
            plans.import_version(conn, v)
    elif current.digest != pf.digest:
        raise PlanFileError(f"this server has its own plan (version {current.version}, another content); "
                            "edit it with `vigil plan edit` instead of importing a file", field="plan")
    known = {v.version: v.digest for v in plans.versions(conn)}
    carried = []
    for s in pf.signatures:
        if known.get(s.version) != s.digest:
            continue  # a sign-off of a version this server numbers differently cannot count here
        if plans.record_signoff(conn, s.version, s.digest, s.email, s.name[:128], s.signed_at,
                                signer_name=s.name, public_key=s.public_key, signature=s.signature):
            carried.append({"version": s.version, "email": s.email, "name": s.name, "key": s.fingerprint})
    audit.append(conn, Change(actor, "plan.import", "plan", str(pf.version),
                              after={"file": str(pf.path), "versions": [v.version for v in pf.versions],
                                     "digest": pf.digest, "signatures": carried}), now)
    st = state(conn)
    assert st is not None
    return st
