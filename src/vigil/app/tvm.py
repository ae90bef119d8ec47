"""The TVM service: the agents' software inventories applied as they arrive, weaknesses computed against the
imported feed bundle (on arrival, and again when a newer bundle is imported), and the reads and changes the API,
CLI and portal make — every read within the caller's device groups, every change audited.

Scores (formulas in vigil.tvm.scores and vigil.tvm.posture): a weakness's risk from CVSS, EPSS, KEV, fix
availability and the device's criticality (tag ``criticality:<low|normal|high|very high>``); a device's exposure
score from its weaknesses that no exception covers; the organisation's is the mean over its devices. Each day's
scores are kept (tvm_score_history) for the trend.
"""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from vigil.app.errors import InvalidInput, NotFound
from vigil.app.ports import AuditRecord, Store
from vigil.app.principal import Principal
from vigil.app.tvm_configuration import SecureConfigurationReads
from vigil.content import tvm_feeds
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.store import tvm as db
from vigil.tvm import bundle as bundles
from vigil.tvm import posture
from vigil.tvm.feedstore import FeedStore, StoreError
from vigil.tvm.purls import INVENTORY_ACTION

log = logging.getLogger("vigil.tvm")

PRIORITIES = ("Low", "Medium", "High")
JUSTIFICATIONS = ("ThirdPartyControl", "AlternateMitigation", "AcceptRisk", "PlannedRemediation")
SCOPES = ("Global", "DeviceGroups")
MAX_EXCEPTION_DAYS = 365


@dataclass
class _Feed:
    store: FeedStore
    sequence: int
    manifest: bundles.Manifest


class TvmService:
    def __init__(self, store: Store, data_dir: Path, clock: Clock) -> None:
        self.store, self.data_dir, self.clock = store, data_dir, clock
        self._lock = threading.Lock()
        self._feed: _Feed | None = None
        self._feed_stamp: tuple[int, int] | None = None
        self.configuration = SecureConfigurationReads(store, clock)  # the agents' secure configuration checks

    # -- feeds -------------------------------------------------------------------------------------------------

    def feed(self) -> _Feed | None:
        """The imported feed store, reopened when `vigil tvm feed import` installed a newer bundle."""
        manifest_path = tvm_feeds.tvm_dir(self.data_dir) / "manifest.json"
        try:
            st = manifest_path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return None
        with self._lock:
            if self._feed is None or stamp != self._feed_stamp:
                manifest = tvm_feeds.imported_manifest(self.data_dir)
                path = tvm_feeds.tvm_dir(self.data_dir) / tvm_feeds.STORE_MEMBER
                if manifest is None or not path.is_file():
                    return None
                try:
                    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
                    self._feed = _Feed(FeedStore(conn), manifest.sequence, manifest)
                except (sqlite3.Error, StoreError) as e:
                    log.error("tvm: the imported feed store %s cannot be read: %s", path, e)
                    return None
                self._feed_stamp = stamp
            return self._feed

    def _cvss(self, feed: _Feed) -> Any:
        cache: dict[str, float | None] = {}

        def cvss_of(advisory_id: str) -> float | None:
            if advisory_id not in cache:
                with self._lock:
                    row = feed.store.conn.execute("SELECT cvss FROM advisory WHERE id = ?", (advisory_id,)).fetchone()
                cache[advisory_id] = row[0] if row else None
            return cache[advisory_id]

        return cvss_of

    def _epss(self, feed: _Feed) -> Any:
        def epss_of(cve: str) -> float | None:
            with self._lock:
                return feed.store.epss(cve)

        return epss_of

    # -- inventory ----------------------------------------------------------------------------------------------

    def on_batch(self, device_id: str, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
        """After a batch is stored: apply its SoftwareInventory rows in the agent's order, then recompute the
        device's weaknesses if its inventory changed and is whole. Returns the rows applied."""
        inv = sorted((r for r in rows.get("DeviceEvents", ()) if r.get("ActionType") == INVENTORY_ACTION),
                     key=lambda r: r.get("ReportId") or 0)
        if not inv:
            return 0
        import json

        applied, complete = 0, False
        now = self.clock.now()
        with self.store.begin() as uow:
            conn = uow.conn  # type: ignore[attr-defined]
            for r in inv:
                fields = r.get("AdditionalFields")
                if isinstance(fields, str):
                    try:
                        fields = json.loads(fields)
                    except ValueError:
                        fields = None
                out = db.apply_inventory(conn, device_id, fields, now)
                if out.problem:
                    log.warning("tvm: device %s inventory row %s: %s", device_id, r.get("ReportId"), out.problem)
                applied += out.applied
                complete = out.complete if out.applied else complete
        if applied and complete:
            self.recompute(device_id)
        return applied

    def recompute(self, device_id: str) -> int:
        """The device's weaknesses against the imported feeds; returns how many. No feed: none are computed."""
        feed = self.feed()
        with self.store.begin() as uow:
            conn = uow.conn  # type: ignore[attr-defined]
            packages = db.device_packages(conn, device_id)
            dev = next((d for d in db.scoped_devices(conn, None) if d["id"] == device_id), None)
        if feed is None or dev is None:
            return 0
        tags = [*(dev.get("tags") or []), *(dev.get("agent_tags") or [])]
        problems: list[str] = []
        with self._lock:
            findings = feed.store.scan([p for _, p in packages], problems)
        rows = posture.device_weaknesses(packages, findings, self._cvss(feed), posture.criticality(tags),
                                         feed.store.in_kev, self._epss(feed))
        with self.store.begin() as uow:
            db.replace_weaknesses(uow.conn, device_id, rows, feed.sequence, self.clock.now())  # type: ignore[attr-defined]
        return len(rows)

    def refresh(self) -> int:
        """Recompute every device whose weaknesses predate the imported bundle; returns how many devices."""
        feed = self.feed()
        if feed is None:
            return 0
        with self.store.begin() as uow:
            states = db.inventory_states(uow.conn)  # type: ignore[attr-defined]
        stale = [s["device_id"] for s in states if s["generation"] > 0 and s["feed_sequence"] != feed.sequence]
        for device_id in stale:
            self.recompute(device_id)
        return len(stale)

    # -- reads --------------------------------------------------------------------------------------------------

    def _read(self, principal: Principal) -> Any:
        principal.require(Permission.VIEW_DATA_TVM)
        self.refresh()
        return self.store.begin()

    def _weaknesses(self, principal: Principal, device_id: str | None = None) -> list[dict[str, Any]]:
        with self._read(principal) as uow:
            conn = uow.conn
            if device_id is not None:
                self._require_device(conn, principal, device_id)
            ws = db.scoped_weaknesses(conn, principal.device_group_ids, device_id)
            exc = self._active_exceptions(conn)
        for w in ws:
            rid = posture.recommendation_id(w["SoftwareVendor"], w["SoftwareName"])
            match = next((e for e in exc if e["recommendation_id"] == rid and (
                e["scope"] == "Global" or w["group_id"] in e["rbac_group_ids"])), None)
            w["CveMitigationStatus"] = f"Exception: {match['justification']}" if match else ""
        return ws

    def _require_device(self, conn: Any, principal: Principal, device_id: str) -> None:
        group = db.device_group(conn, device_id)
        if group is None or not principal.sees_group(group):
            raise NotFound(f"no machine {device_id!r}")

    def _active_exceptions(self, conn: Any) -> list[dict[str, Any]]:
        now = self.clock.now()
        return [e for e in db.exceptions(conn) if e["status"] == "Active" and _aware(e["expires_at"]) > now]

    def _scoring_exceptions(self, conn: Any) -> list[posture.Exception_]:
        return [posture.Exception_(e["recommendation_id"],
                                   None if e["scope"] == "Global" else frozenset(e["rbac_group_ids"]))
                for e in self._active_exceptions(conn)]

    def machine_vulnerabilities(self, principal: Principal, device_id: str) -> list[dict[str, Any]]:
        return sorted(self._weaknesses(principal, device_id), key=lambda w: (-w["RiskScore"], w["CveId"]))

    def machine_software(self, principal: Principal, device_id: str) -> list[dict[str, Any]]:
        with self._read(principal) as uow:
            self._require_device(uow.conn, principal, device_id)
            inv = db.scoped_inventory(uow.conn, principal.device_group_ids, device_id)
        ws = self._weaknesses(principal, device_id)
        return _software(inv, ws)

    def software(self, principal: Principal) -> list[dict[str, Any]]:
        with self._read(principal) as uow:
            summary = db.software_summary(uow.conn, principal.device_group_ids)
        return _software_summary(summary)

    def software_item(self, principal: Principal, software_id: str) -> dict[str, Any]:
        for s in self.software(principal):
            if s["id"] == software_id:
                return s
        raise NotFound(f"no software {software_id!r} on the devices you can see")

    def software_machines(self, principal: Principal, software_id: str) -> list[dict[str, Any]]:
        """The devices a software is installed on, each with the versions and its weaknesses there."""
        self.software_item(principal, software_id)
        with self._read(principal) as uow:
            inv = db.scoped_inventory(uow.conn, principal.device_group_ids)
        ws = self._weaknesses(principal)
        out: dict[str, dict[str, Any]] = {}
        for r in inv:
            if _software_key(r) != software_id:
                continue
            m = out.setdefault(r["DeviceId"], {"id": r["DeviceId"], "computerDnsName": r["DeviceName"],
                                               "osPlatform": r["OSPlatform"], "versions": [], "weaknesses": 0})
            m["versions"].append(r["SoftwareVersion"])
        for w in ws:
            if posture.software_id(w["SoftwareVendor"], w["SoftwareName"]) == software_id and w["DeviceId"] in out:
                out[w["DeviceId"]]["weaknesses"] += 1
        return sorted(out.values(), key=lambda m: m["computerDnsName"] or "")

    def vulnerabilities(self, principal: Principal) -> list[dict[str, Any]]:
        return _vulnerabilities(self._weaknesses(principal))

    def vulnerability(self, principal: Principal, cve: str) -> dict[str, Any]:
        ws = [w for w in self._weaknesses(principal) if w["CveId"].lower() == cve.lower()]
        if not ws:
            raise NotFound(f"no vulnerability {cve!r} on the devices you can see")
        return _vulnerabilities(ws)[0]

    def _scoring(self, principal: Principal) -> tuple[posture.Scoring, dict[str, int]]:
        """Scores and recommendations folded from the visible weaknesses as the store streams them."""
        with self._read(principal) as uow:
            devs = db.scoped_devices(uow.conn, principal.device_group_ids)
            scoring = posture.Scoring(self._scoring_exceptions(uow.conn))
            for row in db.weakness_facts(uow.conn, principal.device_group_ids):
                scoring.add(*row)
        return scoring, scoring.scores(d["id"] for d in devs)

    def device_scores(self, principal: Principal) -> dict[str, int]:
        """Each visible device's exposure score (devices without weaknesses: 0)."""
        return self._scoring(principal)[1]

    def exposure_score(self, principal: Principal) -> dict[str, Any]:
        scores = self.device_scores(principal)
        score = posture.organisation_exposure(scores)
        self._keep_history(scores, score)
        from vigil.tvm.scores import exposure_band

        return {"time": _iso(self.clock.now()), "score": float(score), "rbacGroupId": None,
                "band": str(exposure_band(score)), "devices": len(scores)}

    def exposure_by_groups(self, principal: Principal) -> list[dict[str, Any]]:
        scores = self.device_scores(principal)
        with self.store.begin() as uow:
            devs = db.scoped_devices(uow.conn, principal.device_group_ids)  # type: ignore[attr-defined]
            names = dict(uow.conn.exec_driver_sql("SELECT id, name FROM device_groups").all())  # type: ignore[attr-defined]
        by_group: dict[int, dict[str, int]] = {}
        for d in devs:
            by_group.setdefault(d["group_id"], {})[d["id"]] = scores.get(d["id"], 0)
        now = _iso(self.clock.now())
        return [{"time": now, "score": float(posture.organisation_exposure(s)), "rbacGroupId": g,
                 "rbacGroupName": names.get(g, "")} for g, s in sorted(by_group.items())]

    def exposure_history(self, principal: Principal, days: int = 30) -> list[dict[str, Any]]:
        """The organisation's daily exposure score over the last ``days`` days, over the caller's devices."""
        if not isinstance(days, int) or not 1 <= days <= 365:
            raise InvalidInput("days must be a whole number from 1 to 365", field="days")
        scores = self.device_scores(principal)
        self._keep_history(scores, posture.organisation_exposure(scores))
        since = (self.clock.now() - timedelta(days=days - 1)).strftime("%Y-%m-%d")
        with self.store.begin() as uow:
            rows = db.score_history(uow.conn, sorted(scores), since)  # type: ignore[attr-defined]
        per_day: dict[str, dict[str, int]] = {}
        for r in rows:
            per_day.setdefault(r["day"], {})[r["device_id"]] = r["exposure_score"]
        return [{"date": day, "score": posture.organisation_exposure(s), "devices": len(s)}
                for day, s in sorted(per_day.items())]

    def _keep_history(self, scores: Mapping[str, int], org: int) -> None:
        day = self.clock.now().strftime("%Y-%m-%d")
        counts: dict[str, int] = {}
        with self.store.begin() as uow:
            db.record_scores(uow.conn, day, [(d, s, counts.get(d, 0)) for d, s in scores.items()])  # type: ignore[attr-defined]

    def recommendations(self, principal: Principal) -> list[dict[str, Any]]:
        """Software recommendations (by exposure impact), then configuration changes (by secure-score impact)."""
        scoring, scores = self._scoring(principal)
        return scoring.recommendations(scores) + self.configuration.recommendations(principal)

    def recommendation(self, principal: Principal, rec_id: str) -> dict[str, Any]:
        for r in self.recommendations(principal):
            if r["id"] == rec_id:
                return r
        raise NotFound(f"no recommendation {rec_id!r} for the devices you can see")

    # -- remediation requests and exceptions ----------------------------------------------------------------------

    def request_remediation(self, principal: Principal, rec_id: str, due_on: str, priority: str,
                            notes: str = "") -> dict[str, Any]:
        principal.require(Permission.TVM_REMEDIATION_HANDLING)
        rec = self.recommendation(principal, rec_id)
        try:
            due = datetime.strptime(due_on, "%Y-%m-%d").date()
        except (TypeError, ValueError):
            raise InvalidInput(f"dueOn must be a date YYYY-MM-DD, not {due_on!r}", field="dueOn") from None
        if due < self.clock.now().date():
            raise InvalidInput(f"dueOn {due_on} is in the past", field="dueOn")
        if priority not in PRIORITIES:
            raise InvalidInput(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}", field="priority")
        if not isinstance(notes, str) or len(notes) > 4000:
            raise InvalidInput("requesterNotes must be text of at most 4000 characters", field="requesterNotes")
        now = self.clock.now()
        values = {"recommendation_id": rec_id, "title": rec["recommendationName"],
                  "remediation_type": rec["remediationType"], "priority": priority, "due_on": due.isoformat(),
                  "notes": notes, "status": "Active",
                  "rbac_group_ids": sorted(principal.device_group_ids) if principal.device_group_ids is not None
                  else [], "target_devices": rec["exposedMachineIds"], "created_by": principal.username or
                  principal.actor, "created_at": now, "updated_at": now, "completed_at": None}
        with self.store.begin() as uow:
            rid = db.add_remediation(uow.conn, values)  # type: ignore[attr-defined]
            uow.audit.append(AuditRecord(principal.actor, "tvm.remediation.create", "remediation", str(rid),
                                         after={k: v for k, v in values.items() if k not in ("created_at",
                                                                                            "updated_at")},
                                         source_ip=principal.source_ip), now)
        return self.remediation(principal, rid)

    def remediations(self, principal: Principal) -> list[dict[str, Any]]:
        principal.require(Permission.VIEW_DATA_TVM)
        ws = self._weaknesses(principal)
        with self.store.begin() as uow:
            rows = db.remediations(uow.conn)  # type: ignore[attr-defined]
        visible = [r for r in rows if principal.device_group_ids is None or not r["rbac_group_ids"]
                   or set(r["rbac_group_ids"]) <= principal.device_group_ids]
        return [self._remediation_view(r, ws, principal) for r in visible]

    def remediation(self, principal: Principal, rid: int) -> dict[str, Any]:
        for r in self.remediations(principal):
            if r["id"] == rid:
                return r
        raise NotFound(f"no remediation request {rid}")

    def _remediation_view(self, r: Mapping[str, Any], ws: Sequence[Mapping[str, Any]],
                          principal: Principal) -> dict[str, Any]:
        """Progress is measured from the inventory: a target device is done once the recommendation's weaknesses
        are gone from it (its agent reported the fixed version, or the package removed); for a configuration
        change, once the device's agent reports the check compliant."""
        config = r["recommendation_id"].startswith("sca-_-")
        still = (self.configuration.failing_devices(principal, r["recommendation_id"]) if config else
                 {w["DeviceId"] for w in ws
                  if posture.recommendation_id(w["SoftwareVendor"], w["SoftwareName"]) == r["recommendation_id"]})
        targets = list(r["target_devices"])
        done = [d for d in targets if d not in still]
        status = r["status"]
        if status == "Active" and targets and len(done) == len(targets):
            status = "Completed"
        return {"id": r["id"], "title": r["title"], "createdAt": _iso(r["created_at"]), "createdBy": r["created_by"],
                "dueOn": r["due_on"], "priority": r["priority"], "status": status, "type": r["remediation_type"],
                "category": "SecurityConfiguration" if config else "Software",
                "relatedComponent": r["recommendation_id"], "requesterNotes": r["notes"],
                "recommendationId": r["recommendation_id"], "targetDevices": len(targets),
                "completedDevices": len(done), "remainingDeviceIds": sorted(set(targets) - set(done)),
                "progress": round(100 * len(done) / len(targets)) if targets else 100}

    def remediation_csv(self, principal: Principal, rid: int) -> str:
        r = self.remediation(principal, rid)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["RemediationId", "Title", "DueOn", "Priority", "Status", "DeviceId", "DeviceStatus"])
        remaining = set(r["remainingDeviceIds"])
        with self.store.begin() as uow:
            rows = db.remediations(uow.conn)  # type: ignore[attr-defined]
        targets = next(x["target_devices"] for x in rows if x["id"] == rid)
        for d in targets:
            w.writerow([r["id"], r["title"], r["dueOn"], r["priority"], r["status"], d,
                        "Remaining" if d in remaining else "Completed"])
        return out.getvalue()

    def create_exception(self, principal: Principal, rec_id: str, justification: str, expires_in_days: int,
                         scope: str, group_ids: Sequence[int] = (), comment: str = "") -> dict[str, Any]:
        principal.require(Permission.TVM_EXCEPTION_HANDLING)
        self.recommendation(principal, rec_id)
        if justification not in JUSTIFICATIONS:
            raise InvalidInput(f"justification must be one of {', '.join(JUSTIFICATIONS)}, not {justification!r}",
                               field="justification")
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be Global or DeviceGroups, not {scope!r}", field="scope")
        if not isinstance(expires_in_days, int) or isinstance(expires_in_days, bool) or not (
                1 <= expires_in_days <= MAX_EXCEPTION_DAYS):
            raise InvalidInput(f"expiresInDays must be a whole number from 1 to {MAX_EXCEPTION_DAYS}",
                               field="expiresInDays")
        groups = sorted(set(group_ids))
        if scope == "Global":
            if principal.device_group_ids is not None:
                raise InvalidInput("a Global exception needs access to every device group; use scope DeviceGroups",
                                   field="scope")
            groups = []
        elif not groups:
            raise InvalidInput("scope DeviceGroups needs rbacGroupIds", field="rbacGroupIds")
        elif principal.device_group_ids is not None and not set(groups) <= principal.device_group_ids:
            raise InvalidInput(f"rbacGroupIds {groups} include groups you cannot see", field="rbacGroupIds")
        now = self.clock.now()
        expires = now + timedelta(days=expires_in_days)
        values: dict[str, Any] = {"recommendation_id": rec_id, "justification": justification,
                  "comment": comment[:4000], "scope": scope, "rbac_group_ids": groups, "expires_at": expires,
                  "status": "Active", "created_by": principal.username or principal.actor, "created_at": now}
        with self.store.begin() as uow:
            eid = db.add_exception(uow.conn, values)  # type: ignore[attr-defined]
            uow.audit.append(AuditRecord(principal.actor, "tvm.exception.create", "tvm_exception", str(eid),
                                         after={**values, "expires_at": _iso(expires),
                                                "created_at": _iso(now)}, reason=comment or None,
                                         source_ip=principal.source_ip), now)
        return self.exception(principal, eid)

    def exceptions(self, principal: Principal) -> list[dict[str, Any]]:
        principal.require(Permission.VIEW_DATA_TVM)
        now = self.clock.now()
        with self.store.begin() as uow:
            rows = db.exceptions(uow.conn)  # type: ignore[attr-defined]
        out = []
        for e in rows:
            if principal.device_group_ids is not None and (e["scope"] == "Global" or not set(e["rbac_group_ids"])
                                                           <= principal.device_group_ids):
                continue
            status = e["status"]
            if status == "Active" and _aware(e["expires_at"]) <= now:
                status = "Expired"
            out.append({"id": e["id"], "recommendationId": e["recommendation_id"],
                        "justification": e["justification"], "comment": e["comment"], "scope": e["scope"],
                        "rbacGroupIds": e["rbac_group_ids"], "expiresOn": _iso(e["expires_at"]), "status": status,
                        "createdBy": e["created_by"], "createdAt": _iso(e["created_at"])})
        return out

    def exception(self, principal: Principal, eid: int) -> dict[str, Any]:
        for e in self.exceptions(principal):
            if e["id"] == eid:
                return e
        raise NotFound(f"no exception {eid}")

    def cancel_exception(self, principal: Principal, eid: int, comment: str = "") -> dict[str, Any]:
        principal.require(Permission.TVM_EXCEPTION_HANDLING)
        before = self.exception(principal, eid)
        if before["status"] != "Active":
            raise InvalidInput(f"exception {eid} is {before['status']}, not Active", field="status")
        now = self.clock.now()
        with self.store.begin() as uow:
            db.update_exception(uow.conn, eid, {"status": "Cancelled", "cancelled_by": principal.username or  # type: ignore[attr-defined]
                                                principal.actor, "cancelled_at": now})
            uow.audit.append(AuditRecord(principal.actor, "tvm.exception.cancel", "tvm_exception", str(eid),
                                         before=before, after={"status": "Cancelled"}, reason=comment or None,
                                         source_ip=principal.source_ip), now)
        return self.exception(principal, eid)

    def feed_status(self, principal: Principal) -> dict[str, Any]:
        principal.require(Permission.VIEW_DATA_TVM)
        feed = self.feed()
        if feed is None:
            return {"imported": False, "sequence": None, "feeds": [], "stale": []}
        m = feed.manifest
        today = self.clock.now().date()
        stale = bundles.stale_feeds(m, self.clock.now(), bundles.STALE_AFTER_DAYS)
        return {"imported": True, "sequence": m.sequence, "createdAt": m.created_at, "advisories": m.advisories,
                "feeds": [{"name": f.name, "advisories": f.advisories, "newest": f.newest,
                           "ageDays": bundles.age_days(f.newest, today)} for f in m.feeds],
                "stale": [{"name": n, "ageDays": a} for n, a in stale]}


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else _aware(t).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _software_key(r: Mapping[str, Any]) -> str:
    # Distro packages are grouped by their source package, the name advisories and their fixes use.
    return posture.software_id(r["SoftwareVendor"], r["SourcePackageName"] or r["SoftwareName"])


def _software(inv: Sequence[Mapping[str, Any]], ws: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Defender's Software entities over inventory rows and their weaknesses."""
    groups: dict[str, dict[str, Any]] = {}
    for r in inv:
        sid = _software_key(r)
        g = groups.setdefault(sid, {"id": sid, "name": r["SourcePackageName"] or r["SoftwareName"],
                                    "vendor": r["SoftwareVendor"], "ecosystem": r["Ecosystem"], "devices": set(),
                                    "versions": set(), "packages": set(), "cves": set(), "exposed": set(),
                                    "kev": False})
        g["devices"].add(r["DeviceId"])
        g["versions"].add(r["SourcePackageVersion"] or r["SoftwareVersion"])
        g["packages"].add(r["SoftwareName"])
    for w in ws:
        found = groups.get(posture.software_id(w["SoftwareVendor"], w["SoftwareName"]))
        if found is None:
            continue
        g = found
        g["cves"].add(w["CveId"])
        g["exposed"].add(w["DeviceId"])
        g["kev"] = g["kev"] or bool(w["IsKnownExploited"])
    out = [{"id": g["id"], "name": g["name"], "vendor": g["vendor"], "weaknesses": len(g["cves"]),
            "publicExploit": g["kev"], "activeAlert": False, "exposedMachines": len(g["exposed"]),
            "installedMachines": len(g["devices"]), "impactScore": 0.0, "isNormalized": False,
            "category": g["ecosystem"], "versions": sorted(g["versions"]), "packages": sorted(g["packages"])}
           for g in groups.values()]
    out.sort(key=lambda s: (-s["weaknesses"], -s["exposedMachines"], s["id"]))
    return out


def _software_summary(summary: Mapping[str, Sequence[tuple[Any, ...]]]) -> list[dict[str, Any]]:
    """Defender's Software entities from the store's GROUP BY rows (the same as `_software` over every row)."""
    groups: dict[str, dict[str, Any]] = {}
    for vendor, name, ecosystem, n in summary["software"]:
        sid = posture.software_id(vendor, name)
        g = groups.setdefault(sid, {"id": sid, "name": name, "vendor": vendor, "weaknesses": 0,
                                    "publicExploit": False, "activeAlert": False, "exposedMachines": 0,
                                    "installedMachines": 0, "impactScore": 0.0, "isNormalized": False,
                                    "category": ecosystem, "versions": set(), "packages": set()})
        g["installedMachines"] += n
    for vendor, name, version in summary["versions"]:
        groups[posture.software_id(vendor, name)]["versions"].add(version)
    for vendor, name, package in summary["packages"]:
        groups[posture.software_id(vendor, name)]["packages"].add(package)
    for vendor, name, cves, exposed, kev in summary["weak"]:
        found = groups.get(posture.software_id(vendor, name))
        if found is not None:
            found.update(weaknesses=cves, exposedMachines=exposed, publicExploit=bool(kev))
    out = [{**g, "versions": sorted(g["versions"]), "packages": sorted(g["packages"])} for g in groups.values()]
    out.sort(key=lambda s: (-s["weaknesses"], -s["exposedMachines"], s["id"]))
    return out


def _vulnerabilities(ws: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Defender's Vulnerability entities (one per CVE) with the evidence of each exposed device."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for w in ws:
        by.setdefault(w["CveId"], []).append(w)
    out: list[dict[str, Any]] = []
    rank = {"Critical": 4, "High": 3, "Medium": 2, "Low": 1}
    for cve, group in by.items():
        sev = max((w["VulnerabilitySeverityLevel"] for w in group if w["VulnerabilitySeverityLevel"]),
                  key=lambda s: rank.get(s, 0), default=None)
        cvss = max((w["CvssScore"] for w in group if w["CvssScore"] is not None), default=None)
        epss = max((w["EpssScore"] for w in group if w["EpssScore"] is not None), default=None)
        out.append({
            "id": cve, "name": cve, "description": "", "severity": sev, "cvssV3": cvss, "epss": epss,
            "exposedMachines": len({w["DeviceId"] for w in group}), "publishedOn": None, "updatedOn": None,
            "publicExploit": any(w["IsKnownExploited"] for w in group),
            "exploitVerified": any(w["IsKnownExploited"] for w in group), "exploitInKit": False,
            "exploitTypes": [], "exploitUris": [],
            "advisories": sorted({a for w in group for a in w["AdvisoryIds"]}),
            "evidence": [{"machineId": w["DeviceId"], "computerDnsName": w["DeviceName"],
                          "software": w["SoftwareName"], "ecosystem": w["Ecosystem"],
                          "installedVersion": w["SoftwareVersion"], "fixedVersion": w["FixedVersion"],
                          "advisories": w["AdvisoryIds"], "why": w["MatchReason"], "riskScore": w["RiskScore"],
                          "mitigationStatus": w.get("CveMitigationStatus") or ""} for w in group],
        })
    out.sort(key=lambda v: (-rank.get(v["severity"] or "", 0), -(v["cvssV3"] or 0), v["id"]))
    return out
