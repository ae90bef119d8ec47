"""What a device reports about itself: the accepted identity group rules match, and changes held for review."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.alerts import SUSPICIOUS_ACTIVITY, DetectionSource
from vigil.core.identity import IDENTITY_CHANGE_RULE_ID, ChangeStatus, Identity, IdentityChange, reported_identity
from vigil.core.severity import Severity
from vigil.store import audit
from vigil.store.alerts import NewHit, record_hit
from vigil.store.devices import aware, reassign_devices, touch_device
from vigil.store.schema import device_groups, device_identity_changes, devices

Moves = list[tuple[str, int, int]]

# The facts of a DeviceInfo report that group rules match; everything else a report says is taken as is.
IDENTITY_FACTS = frozenset({"computer_dns_name", "os_platform", "agent_tags"})


class ChangeRefused(Exception):
    """An identity change cannot be decided as asked; ``field`` names what is wrong."""

    def __init__(self, message: str, field: str, status: int = 409) -> None:
        super().__init__(message)
        self.field, self.status = field, status


def _device_actor(device_id: str) -> str:
    return f"device:{device_id}"


def _accepted(row: Any) -> Identity:
    return Identity(row.computer_dns_name, row.os_platform, tuple(sorted(set(row.agent_tags or ()))))


def _apply(conn: sa.Connection, device_id: str, identity: Identity) -> Moves:
    conn.execute(devices.update().where(devices.c.id == device_id).values(
        computer_dns_name=identity.name, os_platform=identity.os_platform, agent_tags=list(identity.tags)))
    return reassign_devices(conn, [device_id])


def report_device(conn: sa.Connection, device_id: str, now: datetime, facts: dict[str, Any]) -> Moves:
    """Record what an agent reported (``touch_device``'s facts); returns any group moves.

    A change to the device's name, OS or agent tags does not move it between groups on the device's word:
    it is recorded, audited and alerted on, and waits for an administrator — unless the device's current
    group trusts reported identities. The first report only completes what enrolment recorded.
    """
    touch_device(conn, device_id, now, **{k: v for k, v in facts.items() if k not in IDENTITY_FACTS})
    if not IDENTITY_FACTS & facts.keys():
        return []
    row = _load(conn, device_id)
    if row is None:
        return []
    moves: Moves = []
    if row.identity_established_at is None:
        # Enrolment carries name and OS but no tags: the first report's tags complete the identity. Its
        # name and OS are still checked against enrolment's below.
        tags = facts.get("agent_tags")
        conn.execute(devices.update().where(devices.c.id == device_id).values(
            identity_established_at=now, **({} if tags is None else {"agent_tags": sorted(set(tags))})))
        moves = reassign_devices(conn, [device_id])
        row = _load(conn, device_id)
    accepted = _accepted(row)
    reported = reported_identity(accepted, facts)
    if row.trust_reported_identity:
        if reported != accepted:
            moves += _apply_trusted(conn, device_id, row.group_name, accepted, reported, now)
        return moves
    _hold(conn, device_id, row.group_name, accepted, reported, now)
    return moves


def _load(conn: sa.Connection, device_id: str) -> Any:
    return conn.execute(
        sa.select(devices.c.computer_dns_name, devices.c.os_platform, devices.c.agent_tags,
                  devices.c.identity_established_at, device_groups.c.name.label("group_name"),
                  device_groups.c.trust_reported_identity)
        .join(device_groups, device_groups.c.id == devices.c.group_id)
        .where(devices.c.id == device_id)
    ).first()


def _apply_trusted(
    conn: sa.Connection, device_id: str, group: str, accepted: Identity, reported: Identity, now: datetime
) -> Moves:
    # A change still pending from before the group trusted reports is settled by this one.
    conn.execute(device_identity_changes.update().where(
        device_identity_changes.c.device_id == device_id,
        device_identity_changes.c.status == ChangeStatus.PENDING.value,
    ).values(status=ChangeStatus.APPLIED.value, decided_by="policy", decided_at=now,
             comment=f"superseded by a report applied under {group!r}'s trust_reported_identity"))
    moves = _apply(conn, device_id, reported)
    res = conn.execute(device_identity_changes.insert().values(
        device_id=device_id, status=ChangeStatus.APPLIED.value, before=accepted.as_json(), after=reported.as_json(),
        detected_at=now, last_reported_at=now, reports=1, revision=1, decided_by="policy", decided_at=now,
        comment=f"device group {group!r} trusts reported identities",
    ))
    audit.append(conn, audit.Change(
        _device_actor(device_id), "device.identity_applied", "device", device_id, before=accepted.as_json(),
        after={**reported.as_json(), "change_id": res.inserted_primary_key[0], "group_moves": moves},  # type: ignore[index]
        reason=f"device group {group!r} trusts reported identities"), now)
    return moves


def _hold(conn: sa.Connection, device_id: str, group: str, accepted: Identity, reported: Identity,
          now: datetime) -> None:
    c = device_identity_changes
    after = reported.as_json()
    pending = conn.execute(
        sa.select(c).where(c.c.device_id == device_id, c.c.status == ChangeStatus.PENDING.value)
    ).first()
    if reported == accepted:
        if pending is not None and pending.after != after:
            # The device reports its accepted identity again: the pending change says so (nothing left to
            # apply), and an administrator dismisses it by rejecting it.
            conn.execute(c.update().where(c.c.id == pending.id).values(
                after=after, last_reported_at=now, reports=pending.reports + 1, revision=pending.revision + 1))
        return
    if pending is not None:
        if pending.after == after:  # the same claim again: counted, not re-audited or re-alerted
            conn.execute(c.update().where(c.c.id == pending.id).values(
                last_reported_at=now, reports=pending.reports + 1))
            return
        # Another claim while the first waits: the change follows the latest report under a new revision,
        # its alert gains the new claim as evidence; one audit record per change, however the agent flaps.
        conn.execute(c.update().where(c.c.id == pending.id).values(
            after=after, last_reported_at=now, reports=pending.reports + 1, revision=pending.revision + 1))
        _alert(conn, device_id, group, accepted, reported, now)
        return
    rejected = conn.execute(
        sa.select(c).where(c.c.device_id == device_id, c.c.status == ChangeStatus.REJECTED.value)
        .order_by(c.c.id.desc()).limit(1)
    ).first()
    if rejected is not None and rejected.after == after and rejected.before == accepted.as_json():
        # An administrator already refused exactly this claim; the device repeating it is not news.
        conn.execute(c.update().where(c.c.id == rejected.id).values(
            last_reported_at=now, reports=rejected.reports + 1))
        return
    res = conn.execute(c.insert().values(
        device_id=device_id, status=ChangeStatus.PENDING.value, before=accepted.as_json(), after=after,
        detected_at=now, last_reported_at=now, reports=1, revision=1,
    ))
    change_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    audit.append(conn, audit.Change(
        _device_actor(device_id), "device.identity_reported", "device", device_id, before=accepted.as_json(),
        after={**after, "change_id": change_id, "changed": list(accepted.changed_fields(reported))},
        reason=f"held for review; the device stays in {group!r}"), now)
    _alert(conn, device_id, group, accepted, reported, now)


def _alert(conn: sa.Connection, device_id: str, group: str, accepted: Identity, reported: Identity,
           now: datetime) -> None:
    changed = accepted.changed_fields(reported)
    record_hit(conn, NewHit(
        machine_id=device_id, rule_id=IDENTITY_CHANGE_RULE_ID,
        title="Device reported a changed identity",
        description=(f"The agent reported a new {', '.join(changed)}. The device stays in device group {group!r} "
                     "until an administrator accepts the change on the device page."),
        severity=Severity.LOW.value, category=SUSPICIOUS_ACTIVITY, detection_source=DetectionSource.IDENTITY.value,
        techniques=[], event_time=now,
        evidence={"entityType": "IdentityChange", "before": accepted.as_json(), "after": reported.as_json()},
    ), now)


def _change(row: Any) -> IdentityChange:
    return IdentityChange(
        id=int(row.id), device_id=row.device_id, status=ChangeStatus(row.status),
        before=Identity.from_json(row.before), after=Identity.from_json(row.after),
        detected_at=aware(row.detected_at), last_reported_at=aware(row.last_reported_at), reports=int(row.reports),
        revision=int(row.revision), decided_by=row.decided_by,
        decided_at=aware(row.decided_at) if row.decided_at else None, comment=row.comment,
    )


def list_changes(conn: sa.Connection, device_id: str, limit: int = 100) -> list[IdentityChange]:
    """A device's identity changes, newest first."""
    c = device_identity_changes
    rows = conn.execute(sa.select(c).where(c.c.device_id == device_id).order_by(c.c.id.desc()).limit(limit))
    return [_change(r) for r in rows]


def decide_change(
    conn: sa.Connection, device_id: str, change_id: int, *, accept: bool, revision: int, who: audit.Change,
    now: datetime,
) -> tuple[IdentityChange, Moves]:
    """Accept (apply the reported identity and re-evaluate the group) or reject a pending change.

    ``who`` carries the deciding caller's actor and address; its action and before/after are filled here.
    ``revision`` must be the one the administrator reviewed.
    """
    c = device_identity_changes
    row = conn.execute(sa.select(c).where(c.c.id == change_id, c.c.device_id == device_id)).first()
    if row is None:
        raise ChangeRefused(f"no identity change {change_id} on this device", "changeId", 404)
    if row.status != ChangeStatus.PENDING.value:
        raise ChangeRefused(f"identity change {change_id} is {row.status}, not pending", "changeId")
    if row.revision != revision:
        raise ChangeRefused(
            f"the device reported another identity since revision {revision}; review revision {row.revision}",
            "Revision")
    # Guarded so two administrators deciding at once cannot both win.
    res = conn.execute(c.update().where(c.c.id == change_id, c.c.status == ChangeStatus.PENDING.value,
                                        c.c.revision == revision).values(
        status=(ChangeStatus.ACCEPTED if accept else ChangeStatus.REJECTED).value, decided_by=who.actor,
        decided_at=now, comment=who.reason))
    if res.rowcount != 1:
        raise ChangeRefused(f"identity change {change_id} was decided or revised meanwhile; reload it", "changeId")
    moves: Moves = []
    current = conn.execute(sa.select(devices.c.computer_dns_name, devices.c.os_platform, devices.c.agent_tags)
                           .where(devices.c.id == device_id)).one()
    if accept:
        moves = _apply(conn, device_id, Identity.from_json(row.after))
    audit.append(conn, audit.Change(
        who.actor, "device.identity_accept" if accept else "device.identity_reject", "device", device_id,
        before=_accepted(current).as_json(),
        after={**row.after, "change_id": change_id, "revision": revision, "group_moves": moves},
        reason=who.reason, source_ip=who.source_ip), now)
    changed = conn.execute(sa.select(c).where(c.c.id == change_id)).one()
    return _change(changed), moves

