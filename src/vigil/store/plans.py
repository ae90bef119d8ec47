"""The deployment plan's versions (YAML as written) and the sign-offs given on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from vigil.store.devices import aware
from vigil.store.schema import deployment_plans, plan_signoffs


@dataclass(frozen=True)
class StoredPlan:
    version: int
    document: str
    digest: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Signoff:
    version: int
    digest: str
    email: str
    signed_by: str
    signed_at: datetime
    # Set for a sign-off given offline on a plan file: the signer's name, Ed25519 key and detached signature.
    signer_name: str | None = None
    public_key: str | None = None
    signature: str | None = None


def current_plan(conn: sa.Connection) -> StoredPlan | None:
    row = conn.execute(sa.select(deployment_plans).order_by(deployment_plans.c.version.desc()).limit(1)).first()
    if row is None:
        return None
    return StoredPlan(int(row.version), row.document, row.digest, aware(row.created_at), row.created_by)


def save_plan(
    conn: sa.Connection, document: str, digest: str, created_by: str, now: datetime
) -> tuple[StoredPlan, bool]:
    """Store a new version unless the content is unchanged; returns (current, whether a version was added)."""
    cur = current_plan(conn)
    if cur is not None and cur.digest == digest:
        return cur, False
    version = (cur.version + 1) if cur else 1
    conn.execute(deployment_plans.insert().values(
        version=version, document=document, digest=digest, created_at=now, created_by=created_by))
    return StoredPlan(version, document, digest, now, created_by), True


def record_signoff(
    conn: sa.Connection, version: int, digest: str, email: str, signed_by: str, now: datetime, *,
    signer_name: str | None = None, public_key: str | None = None, signature: str | None = None,
) -> bool:
    """False when this stakeholder had already signed this version."""
    exists = conn.execute(sa.select(plan_signoffs.c.id).where(
        plan_signoffs.c.plan_version == version, plan_signoffs.c.stakeholder_email == email.lower())).first()
    if exists:
        return False
    conn.execute(plan_signoffs.insert().values(
        plan_version=version, plan_digest=digest, stakeholder_email=email.lower(), signed_by=signed_by, signed_at=now,
        signer_name=signer_name, public_key=public_key, signature=signature))
    return True


def signoffs(conn: sa.Connection, version: int | None = None) -> list[Signoff]:
    q = sa.select(plan_signoffs).order_by(plan_signoffs.c.signed_at)
    if version is not None:
        q = q.where(plan_signoffs.c.plan_version == version)
    return [Signoff(int(r.plan_version), r.plan_digest, r.stakeholder_email, r.signed_by, aware(r.signed_at),
                    r.signer_name, r.public_key, r.signature)
            for r in conn.execute(q)]


def versions(conn: sa.Connection) -> list[StoredPlan]:
    """Every version, oldest first: the plan's history."""
    return [StoredPlan(int(r.version), r.document, r.digest, aware(r.created_at), r.created_by)
            for r in conn.execute(sa.select(deployment_plans).order_by(deployment_plans.c.version))]


def import_version(conn: sa.Connection, version: StoredPlan) -> None:
    """Store a version made elsewhere (a plan file prepared before the server existed), keeping its number."""
    conn.execute(deployment_plans.insert().values(
        version=version.version, document=version.document, digest=version.digest, created_at=version.created_at,
        created_by=version.created_by))
