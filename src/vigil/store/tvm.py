"""Vulnerability management on SQLAlchemy: each device's software inventory kept from the agent's diffs, its
weaknesses, and the reads the TVM service aggregates (always within the caller's device groups)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from vigil.store.schema import (
    devices,
    tvm_exceptions,
    tvm_inventory_state,
    tvm_remediations,
    tvm_score_history,
    tvm_secure_configuration,
    tvm_software_inventory,
    tvm_software_vulnerabilities,
)
from vigil.tvm.configuration_report import ConfigurationRow
from vigil.tvm.model import Package
from vigil.tvm.purls import PurlError, from_purl

log = logging.getLogger("vigil.tvm")

_FAMILY_VENDOR = {"Debian": "debian", "AlmaLinux": "almalinux", "Alpine": "alpine", "PyPI": "pypi", "npm": "npm",
                  "Go": "golang", "Linux": "linux"}


def vendor_of(ecosystem: str) -> str:
    return _FAMILY_VENDOR.get(ecosystem.split(":", 1)[0], ecosystem.split(":", 1)[0].lower())


@dataclass(frozen=True, slots=True)
class InventoryOutcome:
    applied: bool  # the inventory changed
    complete: bool  # the device's inventory is whole (no part of a generation still to come)
    problem: str = ""  # why the row was not applied, or the package URLs skipped


def _header(fields: Any) -> tuple[str, int, int | None, int, int, list[str], list[str]] | str:
    if not isinstance(fields, dict):
        return "AdditionalFields is not an object"
    series, gen, base, part, parts = (fields.get(k) for k in ("Series", "Generation", "Base", "Part", "Parts"))
    added, removed = fields.get("Added"), fields.get("Removed")
    if not isinstance(series, str) or not 0 < len(series) <= 64:
        return "Series must be a string of 1 to 64 characters"
    for name, v in (("Generation", gen), ("Part", part), ("Parts", parts)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return f"{name} must be a whole number from 1"
    if base is not None and (not isinstance(base, int) or isinstance(base, bool) or base >= gen):  # type: ignore[operator]
        return "Base must be null (a full inventory) or a generation before Generation"
    if part > parts:  # type: ignore[operator]
        return "Part is past Parts"
    for name, v in (("Added", added), ("Removed", removed)):
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            return f"{name} must be a list of package URLs"
    return series, gen, base, part, parts, added, removed  # type: ignore[return-value]


def _device_facts(conn: sa.Connection, device_id: str) -> dict[str, Any]:
    row = conn.execute(sa.select(devices.c.computer_dns_name, devices.c.os_platform, devices.c.os_version)
                       .where(devices.c.id == device_id)).first()
    if row is None:
        return {"DeviceName": None, "OSPlatform": None, "OSVersion": None}
    return {"DeviceName": row[0], "OSPlatform": row[1], "OSVersion": row[2]}


def inventory_row(device_id: str, facts: dict[str, Any], purl: str, p: Package, now: datetime) -> dict[str, Any]:
    return {
        "DeviceId": device_id, **facts, "OSArchitecture": p.extra.get("arch"),
        "SoftwareVendor": vendor_of(p.ecosystem), "SoftwareName": p.name, "SoftwareVersion": p.version,
        "EndOfSupportStatus": None, "EndOfSupportDate": None, "ProductCodeCpe": None, "SoftwarePurl": purl,
        "Ecosystem": p.ecosystem, "SourcePackageName": p.source_name, "SourcePackageVersion": p.source_version,
        "FirstSeenTimestamp": now,
    }


def apply_inventory(conn: sa.Connection, device_id: str, fields: Any, now: datetime) -> InventoryOutcome:
    """Apply one SoftwareInventory row (a full inventory or a diff, or one part of either) to the device's
    stored inventory. A diff applies only on the generation the server holds and parts only in order; anything
    else marks the device out of sync until the agent's next full inventory (the stored one stays as it was)."""
    header = _header(fields)
    if isinstance(header, str):
        return InventoryOutcome(False, False, header)
    series, gen, base, part, parts, added, removed = header
    st = conn.execute(sa.select(tvm_inventory_state).where(tvm_inventory_state.c.device_id == device_id)).first()
    same = st is not None and st.series == series
    if base is None and part == 1:
        ok = True
    elif part == 1:
        ok = same and st is not None and st.generation == base and st.pending_generation is None
    else:
        ok = same and st is not None and st.pending_generation == gen and st.next_part == part
    if not ok:
        if st is not None:
            conn.execute(tvm_inventory_state.update().where(tvm_inventory_state.c.device_id == device_id)
                         .values(out_of_sync=True, updated_at=now))
        return InventoryOutcome(False, False, f"generation {gen} part {part} (base {base}) does not follow what the "
                                "server holds; waiting for the next full inventory")
    inv = tvm_software_inventory
    first_seen = dict(conn.execute(sa.select(inv.c.SoftwarePurl, inv.c.FirstSeenTimestamp)
                                   .where(inv.c.DeviceId == device_id)).all()) if base is None and part == 1 else {}
    if base is None and part == 1:
        conn.execute(inv.delete().where(inv.c.DeviceId == device_id))
    if removed:
        for i in range(0, len(removed), 500):
            conn.execute(inv.delete().where(inv.c.DeviceId == device_id, inv.c.SoftwarePurl.in_(removed[i:i + 500])))
    facts = _device_facts(conn, device_id)
    rows, bad = [], []
    for purl in dict.fromkeys(added):
        try:
            p = from_purl(purl)
        except PurlError as e:
            bad.append(str(e))
            continue
        row = inventory_row(device_id, facts, purl, p, now)
        row["FirstSeenTimestamp"] = first_seen.get(purl) or now
        rows.append(row)
    if rows:
        purls = [r["SoftwarePurl"] for r in rows]
        for i in range(0, len(purls), 500):  # a diff may re-add a package the server still holds
            conn.execute(inv.delete().where(inv.c.DeviceId == device_id, inv.c.SoftwarePurl.in_(purls[i:i + 500])))
        conn.execute(inv.insert(), rows)
    last = part == parts
    values = {"series": series, "generation": gen if last else (st.generation if st is not None and same else 0),
              "pending_generation": None if last else gen, "next_part": 1 if last else part + 1,
              "out_of_sync": False, "updated_at": now}
    if base is None and part == 1 and not last:
        values["generation"] = 0  # the old inventory is gone and the new one is not whole yet
    if st is None:
        conn.execute(tvm_inventory_state.insert().values(device_id=device_id, **values))
    else:
        conn.execute(tvm_inventory_state.update().where(tvm_inventory_state.c.device_id == device_id).values(**values))
    problem = f"{len(bad)} package URLs skipped, first: {bad[0]}" if bad else ""
    return InventoryOutcome(True, last, problem)


def device_packages(conn: sa.Connection, device_id: str) -> list[tuple[str, Package]]:
    inv = tvm_software_inventory
    out = []
    for (purl,) in conn.execute(sa.select(inv.c.SoftwarePurl).where(inv.c.DeviceId == device_id)):
        try:
            out.append((purl, from_purl(purl)))
        except PurlError:
            continue  # stored rows were parsed once; a purl this Vigil no longer reads is skipped
    return out


def replace_weaknesses(conn: sa.Connection, device_id: str, rows: Sequence[dict[str, Any]], feed_sequence: int | None,
                       now: datetime) -> None:
    """The device's weaknesses become ``rows``; a weakness found before keeps its FirstSeenTimestamp."""
    v = tvm_software_vulnerabilities
    seen = {(p, c): t for p, c, t in conn.execute(sa.select(v.c.SoftwarePurl, v.c.CveId, v.c.FirstSeenTimestamp)
                                                  .where(v.c.DeviceId == device_id))}
    conn.execute(v.delete().where(v.c.DeviceId == device_id))
    facts = _device_facts(conn, device_id)
    out = []
    for r in rows:
        row = {**facts, **r, "DeviceId": device_id}
        row["CveTags"] = json.dumps(r.get("CveTags") or [])
        row["AdvisoryIds"] = json.dumps(r.get("AdvisoryIds") or [])
        row["FirstSeenTimestamp"] = seen.get((r["SoftwarePurl"], r["CveId"])) or now
        out.append(row)
    if out:
        conn.execute(v.insert(), out)
    conn.execute(tvm_inventory_state.update().where(tvm_inventory_state.c.device_id == device_id)
                 .values(feed_sequence=feed_sequence))


def inventory_states(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(sa.select(tvm_inventory_state))]


def _scoped(stmt: Any, device_col: Any, group_ids: frozenset[int] | None) -> Any:
    stmt = stmt.join(devices, devices.c.id == device_col).where(devices.c.offboarded_at.is_(None))
    if group_ids is not None:
        stmt = stmt.where(devices.c.group_id.in_(sorted(group_ids)))
    return stmt


def scoped_devices(conn: sa.Connection, group_ids: frozenset[int] | None) -> list[dict[str, Any]]:
    stmt = sa.select(devices.c.id, devices.c.computer_dns_name, devices.c.group_id, devices.c.tags,
                     devices.c.agent_tags).where(devices.c.offboarded_at.is_(None))
    if group_ids is not None:
        stmt = stmt.where(devices.c.group_id.in_(sorted(group_ids)))
    return [dict(r._mapping) for r in conn.execute(stmt)]


def scoped_inventory(conn: sa.Connection, group_ids: frozenset[int] | None,
                     device_id: str | None = None) -> list[dict[str, Any]]:
    inv = tvm_software_inventory
    stmt = _scoped(sa.select(inv).select_from(inv), inv.c.DeviceId, group_ids)
    if device_id is not None:
        stmt = stmt.where(inv.c.DeviceId == device_id)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def scoped_weaknesses(conn: sa.Connection, group_ids: frozenset[int] | None,
                      device_id: str | None = None) -> list[dict[str, Any]]:
    v = tvm_software_vulnerabilities
    stmt = _scoped(sa.select(v, devices.c.group_id).select_from(v), v.c.DeviceId, group_ids)
    if device_id is not None:
        stmt = stmt.where(v.c.DeviceId == device_id)
    out = []
    for r in conn.execute(stmt):
        d = dict(r._mapping)
        d["CveTags"] = json.loads(d["CveTags"] or "[]")
        d["AdvisoryIds"] = json.loads(d["AdvisoryIds"] or "[]")
        out.append(d)
    return out


def weakness_facts(conn: sa.Connection, group_ids: frozenset[int] | None) -> Iterable[tuple[Any, ...]]:
    """What scoring needs of each visible weakness, streamed as tuples (a server-side cursor on PostgreSQL): the
    scores and recommendations of 1,000 devices are folded row by row, never held as dicts. Per row: DeviceId,
    group_id, SoftwareVendor, SoftwareName, CveId, RiskScore, FixedVersion, CvssScore, IsKnownExploited,
    Ecosystem."""
    v = tvm_software_vulnerabilities
    stmt = _scoped(sa.select(v.c.DeviceId, devices.c.group_id, v.c.SoftwareVendor, v.c.SoftwareName, v.c.CveId,
                             v.c.RiskScore, v.c.FixedVersion, v.c.CvssScore, v.c.IsKnownExploited, v.c.Ecosystem)
                   .select_from(v), v.c.DeviceId, group_ids)
    for r in conn.execution_options(stream_results=True, yield_per=5000).execute(stmt):
        yield tuple(r)


def software_summary(conn: sa.Connection, group_ids: frozenset[int] | None) -> dict[str, list[tuple[Any, ...]]]:
    """The software inventory grouped in SQL (distro packages by their source package): per software its devices,
    versions and binary package names; and per weakness-bearing software its CVEs, exposed devices and KEV. Rows:
    `software` (vendor, name, ecosystem, devices), `versions` (vendor, name, version), `packages` (vendor, name,
    package), `weak` (vendor, name, CVEs, exposed devices, any KEV)."""
    inv, v = tvm_software_inventory, tvm_software_vulnerabilities
    name = sa.func.coalesce(inv.c.SourcePackageName, inv.c.SoftwareName)
    version = sa.func.coalesce(inv.c.SourcePackageVersion, inv.c.SoftwareVersion)

    def grouped(*cols: Any, extra: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        stmt = _scoped(sa.select(inv.c.SoftwareVendor, name, *cols, *extra).select_from(inv), inv.c.DeviceId,
                       group_ids).group_by(inv.c.SoftwareVendor, name, *cols)
        return [tuple(r) for r in conn.execute(stmt)]

    weak = _scoped(sa.select(v.c.SoftwareVendor, v.c.SoftwareName, sa.func.count(sa.distinct(v.c.CveId)),
                             sa.func.count(sa.distinct(v.c.DeviceId)),
                             sa.func.max(sa.case((v.c.IsKnownExploited, 1), else_=0))).select_from(v),
                   v.c.DeviceId, group_ids).group_by(v.c.SoftwareVendor, v.c.SoftwareName)
    return {"software": grouped(extra=(sa.func.min(inv.c.Ecosystem), sa.func.count(sa.distinct(inv.c.DeviceId)))),
            "versions": grouped(version), "packages": grouped(inv.c.SoftwareName),
            "weak": [tuple(r) for r in conn.execute(weak)]}


def device_group(conn: sa.Connection, device_id: str) -> int | None:
    row = conn.execute(sa.select(devices.c.group_id).where(devices.c.id == device_id,
                                                           devices.c.offboarded_at.is_(None))).first()
    return None if row is None else int(row[0])


def record_scores(conn: sa.Connection, day: str, scores: Iterable[tuple[str, int, int]]) -> None:
    """Today's exposure score per device ("" for the organisation), replacing an earlier one of the same day."""
    h = tvm_score_history
    for device_id, score, weaknesses in scores:
        conn.execute(h.delete().where(h.c.day == day, h.c.device_id == device_id))
        conn.execute(h.insert().values(day=day, device_id=device_id, exposure_score=score, weaknesses=weaknesses))


def score_history(conn: sa.Connection, device_ids: Sequence[str] | None, since: str) -> list[dict[str, Any]]:
    h = tvm_score_history
    stmt = sa.select(h).where(h.c.day >= since).order_by(h.c.day)
    if device_ids is not None:
        stmt = stmt.where(h.c.device_id.in_(list(device_ids)))
    return [dict(r._mapping) for r in conn.execute(stmt)]


def add_remediation(conn: sa.Connection, values: dict[str, Any]) -> int:
    return int(conn.execute(tvm_remediations.insert().values(**values)).inserted_primary_key[0])  # type: ignore[index]


def remediations(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(sa.select(tvm_remediations).order_by(tvm_remediations.c.id))]


def update_remediation(conn: sa.Connection, rid: int, values: dict[str, Any]) -> None:
    conn.execute(tvm_remediations.update().where(tvm_remediations.c.id == rid).values(**values))


def add_exception(conn: sa.Connection, values: dict[str, Any]) -> int:
    return int(conn.execute(tvm_exceptions.insert().values(**values)).inserted_primary_key[0])  # type: ignore[index]


def exceptions(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(sa.select(tvm_exceptions).order_by(tvm_exceptions.c.id))]


def update_exception(conn: sa.Connection, eid: int, values: dict[str, Any]) -> None:
    conn.execute(tvm_exceptions.update().where(tvm_exceptions.c.id == eid).values(**values))


def replace_configuration(conn: sa.Connection, device_id: str, rows: Sequence[ConfigurationRow],
                          assessed_at: datetime) -> bool:
    """The device's secure configuration assessment becomes ``rows``, unless the one stored is newer (a row
    re-delivered late). Returns whether it was replaced."""
    t = tvm_secure_configuration
    stored = conn.execute(sa.select(sa.func.max(t.c.Timestamp)).where(t.c.DeviceId == device_id)).scalar()
    if stored is not None and _utc(stored) > _utc(assessed_at):
        return False
    conn.execute(t.delete().where(t.c.DeviceId == device_id))
    facts = _device_facts(conn, device_id)
    conn.execute(t.insert(), [{
        "DeviceId": device_id, "DeviceName": facts["DeviceName"], "OSPlatform": facts["OSPlatform"],
        "Timestamp": assessed_at, "ConfigurationId": r.configuration_id, "ConfigurationCategory": r.category,
        "ConfigurationSubcategory": r.subcategory, "ConfigurationImpact": r.impact, "IsCompliant": r.compliant,
        "IsApplicable": r.applicable, "Context": json.dumps([r.evidence]), "IsExpectedUserImpact": r.user_impact,
        "ConfigurationName": r.name, "RemediationOptions": r.remediation} for r in rows])
    return True


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def scoped_configuration(conn: sa.Connection, group_ids: frozenset[int] | None,
                         device_id: str | None = None) -> list[dict[str, Any]]:
    """The stored assessments of the visible devices (with each device's group and OS version), by device and id."""
    t = tvm_secure_configuration
    stmt = _scoped(sa.select(t, devices.c.group_id, devices.c.os_version).select_from(t), t.c.DeviceId, group_ids)
    if device_id is not None:
        stmt = stmt.where(t.c.DeviceId == device_id)
    out = []
    for r in conn.execute(stmt.order_by(t.c.DeviceId, t.c.ConfigurationId)):
        d = dict(r._mapping)
        d["Context"] = json.loads(d["Context"] or "[]")
        out.append(d)
    return out
