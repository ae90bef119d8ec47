"""OData options on the list routes of a real server: the same parser on machineactions, alerts and incidents."""

from __future__ import annotations

from typing import Any

from tests.support import VigilServer, enroll_raw


def test_list_routes_take_odata_options_and_name_bad_tokens(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    package = server.onboarding_package(uses=3)["token"]
    devices = [enroll_raw(server, package, f"host-{i}").json()["device_id"] for i in range(3)]
    with server.client(server.admin_token()) as c:
        for d in devices:
            assert c.post(f"/api/machines/{d}/isolate", json={"Comment": f"iso {d}"}).status_code == 201
        assert c.post(f"/api/machines/{devices[0]}/runAntiVirusScan", json={"Comment": "scan"}).status_code == 201

        def actions(**params: Any) -> list[dict[str, Any]]:
            r = c.get("/api/machineactions", params=params)
            assert r.status_code == 200, r.text
            assert r.json()["@odata.context"] == "/api/$metadata#MachineActions"
            return list(r.json()["value"])

        assert len(actions()) == 4
        isolations = actions(**{"$filter": f"type eq 'Isolate' and machineId in ('{devices[0]}', '{devices[2]}')"})
        assert sorted(a["machineId"] for a in isolations) == sorted([devices[0], devices[2]])
        assert [a["type"] for a in actions(**{"$filter": "type ne 'Isolate'"})] == ["RunAntiVirusScan"]
        assert len(actions(**{"$filter": "startswith(requestorComment, 'ISO')"})) == 3
        ordered = actions(**{"$orderby": "machineId desc, type", "$select": "machineId,type"})
        assert [a["machineId"] for a in ordered] == sorted((a["machineId"] for a in ordered), reverse=True)
        assert set(ordered[0]) == {"machineId", "type"}
        page = actions(**{"$orderby": "machineId", "$skip": 1, "$top": 2, "$select": "machineId"})
        assert page == [{"machineId": m} for m in sorted(a["machineId"] for a in actions())[1:3]]

        bad = c.get("/api/machineactions", params={"$filter": "type eq 'Isolate' andd status eq 'Pending'"})
        assert bad.status_code == 400 and bad.json()["field"] == "$filter" and "'andd'" in bad.json()["detail"]
        bad = c.get("/api/alerts", params={"$filter": "colour eq 'red'"})
        assert bad.status_code == 400 and "unknown property 'colour'" in bad.json()["detail"]
        assert c.get("/api/alerts", params={"$filter": "severity eq 'High'", "$top": 5}).json()["value"] == []
        bad = c.get("/api/incidents", params={"$orderby": "severity upward"})
        assert bad.status_code == 400 and bad.json()["field"] == "$orderby"
        assert c.get("/api/incidents", params={"$select": "incidentId"}).status_code == 200


def test_machines_and_investigations_take_odata_options(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    package = server.onboarding_package(uses=3)["token"]
    devices = [enroll_raw(server, package, f"odata-{i}").json()["device_id"] for i in range(3)]
    with server.client(server.admin_token()) as c:
        r = c.post(f"/api/machines/{devices[1]}/tags", json={"Value": "finance", "Action": "Add"})
        assert r.status_code == 200, r.text
        for d in devices[:2]:
            assert c.post(f"/api/machines/{d}/startInvestigation", json={"Comment": d}).status_code == 201

        def listing(route: str, **params: Any) -> list[dict[str, Any]]:
            r = c.get(route, params=params)
            assert r.status_code == 200, r.text
            return list(r.json()["value"])

        assert c.get("/api/machines").json()["@odata.context"] == "/api/$metadata#Machines"
        assert len(listing("/api/machines")) == 3
        assert listing("/api/machines", **{"$filter": "machineTags eq 'finance'", "$select": "id"}) == [
            {"id": devices[1]}]
        named = listing("/api/machines", **{"$filter": "startswith(computerDnsName, 'ODATA-')",
                                            "$orderby": "computerDnsName desc", "$skip": 1, "$top": 1,
                                            "$select": "computerDnsName,isOffboarded"})
        assert named == [{"computerDnsName": "odata-1", "isOffboarded": False}]
        bad = c.get("/api/machines", params={"$filter": "computerDnsName eq odata-1"})
        assert bad.status_code == 400 and bad.json()["field"] == "$filter" and "position 19" in bad.json()["detail"]
        bad = c.get("/api/machines", params={"$select": "id,colour"})
        assert bad.status_code == 400 and "unknown property 'colour'" in bad.json()["detail"]

        assert c.get("/api/investigations").json()["@odata.context"] == "/api/$metadata#Investigations"
        assert len(listing("/api/investigations")) == 2
        mine = listing("/api/investigations", **{"$filter": f"machineId eq '{devices[0]}'", "$select": "machineId"})
        assert mine == [{"machineId": devices[0]}]
        ordered = listing("/api/investigations", **{"$orderby": "machineId", "$select": "machineId"})
        assert [i["machineId"] for i in ordered] == sorted(devices[:2])
        assert len(listing("/api/investigations", **{"$top": 1})) == 1
        assert listing("/api/investigations", **{"$skip": 2}) == []
        bad = c.get("/api/investigations", params={"$orderby": "startTime sideways"})
        assert bad.status_code == 400 and bad.json()["field"] == "$orderby"
        assert c.get("/api/investigations", params={"$top": 0}).status_code == 422
