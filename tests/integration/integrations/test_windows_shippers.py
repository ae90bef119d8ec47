"""Windows events from shippers on a real server: Sysmon and Security records the test builds, in Winlogbeat's and
Fluent Bit's JSON, raise the alerts `vigil triage` raises on the same records, land in Defender's tables, and
make their hosts devices with their OS; every way in without a live source secret is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support import VigilServer
from tests.unit.detect.support import SYSMON, rule_yaml

RULES = {
    "mimikatz.yml": rule_yaml("selection:\n  Image|endswith: '\\mimikatz.exe'\ncondition: selection",
                              title="Mimikatz started", level="high"),
    "encoded.yml": rule_yaml("selection:\n  CommandLine|contains: ' -enc '\ncondition: selection",
                             title="Encoded PowerShell", level="medium"),
    "c2.yml": rule_yaml("selection:\n  DestinationPort: 4444\ncondition: selection", title="Port 4444 beacon",
                        logsource="product: windows\ncategory: network_connection", level="high"),
    "brute.yml": rule_yaml("selection:\n  EventID: 4625\n  LogonType: 3\ncondition: selection",
                           title="Network logon failure", logsource="product: windows\nservice: security",
                           level="low"),
}
NOW = datetime.now(UTC).replace(microsecond=0)


def _sysmon(n: int, event_id: int, **data: Any) -> dict[str, Any]:
    """One event in the form pyevtx gives an EVTX record (what `vigil triage` reads)."""
    channel = "Security" if event_id in (4624, 4625) else SYSMON
    stamp = (NOW - timedelta(minutes=10 - n)).isoformat().replace("+00:00", "Z")
    return {"Event": {"System": {"Channel": channel, "EventID": event_id, "Computer": "WIN-DC01.corp.example",
                                 "EventRecordID": 1000 + n, "TimeCreated": {"#attributes": {"SystemTime": stamp}}},
                      "EventData": {k: str(v) for k, v in data.items()}}}


RECORDS = [
    _sysmon(1, 1, Image="C:\\Users\\bob\\mimikatz.exe", CommandLine="mimikatz.exe sekurlsa::logonpasswords",
            ParentImage="C:\\Windows\\System32\\cmd.exe", ProcessId=4242, User="CORP\\bob",
            Hashes="SHA256=" + "ab" * 32),
    _sysmon(2, 1, Image="C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            CommandLine="powershell.exe -nop -enc SQBFAFgA", ParentImage="C:\\Windows\\explorer.exe", ProcessId=77),
    _sysmon(3, 1, Image="C:\\Windows\\System32\\notepad.exe", CommandLine="notepad.exe", ProcessId=78),
    _sysmon(4, 3, Image="C:\\Users\\bob\\beacon.exe", DestinationIp="203.0.113.9", DestinationPort=4444,
            SourceIp="10.0.0.5", SourcePort=50100, Protocol="tcp", ProcessId=99),
    _sysmon(5, 11, Image="C:\\Users\\bob\\beacon.exe", TargetFilename="C:\\Users\\bob\\AppData\\loot.zip",
            ProcessId=99),
    _sysmon(6, 4625, TargetUserName="administrator", TargetDomainName="CORP", LogonType=3,
            IpAddress="198.51.100.7", IpPort=51515, WorkstationName="KALI"),
    _sysmon(7, 13, Image="C:\\Windows\\regedit.exe", TargetObject="HKLM\\Software\\Run\\x", Details="evil.exe",
            EventType="SetValue"),
]


def winlogbeat(record: dict[str, Any]) -> dict[str, Any]:
    """The same record as Winlogbeat 8 writes it (ECS, `winlog.*`)."""
    system, data = record["Event"]["System"], record["Event"]["EventData"]
    return {"@timestamp": system["TimeCreated"]["#attributes"]["SystemTime"],
            "agent": {"type": "winlogbeat", "version": "8.15.0"},
            "host": {"name": "win-dc01", "os": {"family": "windows", "name": "Windows Server 2022 Datacenter",
                                                "version": "10.0", "build": "20348.2340"}},
            "event": {"code": str(system["EventID"]), "provider": "Microsoft-Windows-Sysmon"},
            "winlog": {"channel": system["Channel"], "event_id": system["EventID"], "computer_name": system["Computer"],
                       "record_id": system["EventRecordID"], "provider_name": "Microsoft-Windows-Sysmon",
                       "event_data": data}}


def fluentbit(record: dict[str, Any]) -> dict[str, Any]:
    system, data = record["Event"]["System"], record["Event"]["EventData"]
    stamp = system["TimeCreated"]["#attributes"]["SystemTime"]
    return {"Channel": system["Channel"], "EventID": system["EventID"], "Computer": "WS-07.corp.example",
            "TimeCreated": stamp.replace("T", " ").replace("Z", " +0000"), "RecordNumber": system["EventRecordID"],
            "EventData": data}


def _triage(tmp_path: Path, rules: Path) -> list[tuple[str, str]]:
    events = tmp_path / "records.jsonl"
    events.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    out = subprocess.run([sys.executable, "-m", "vigil", "triage", str(events), "--rules", str(rules), "-o", "jsonl",
                          "-j", "1", "--no-cache"], capture_output=True, text=True, check=True)
    found = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return sorted((r["rule"], r["timestamp"]) for r in found)


def test_shipped_sysmon_and_security_events_alert_like_triage_and_fill_defender_tables(tmp_path: Path) -> None:
    server = VigilServer.create(tmp_path / "s", "")
    rules = server.data_dir / "rules"
    rules.mkdir(exist_ok=True)
    for name, text in RULES.items():
        (rules / name).write_text(text)
    expected = _triage(tmp_path, rules)
    assert {t for t, _ in expected} == {"Mimikatz started", "Encoded PowerShell", "Port 4444 beacon",
                                        "Network logon failure"}
    server.start()
    try:
        admin = server.admin_token()
        with server.client(admin) as c:
            secret = c.post("/api/ingest/sources", json={"name": "dc-winlogbeat"}).json()["secret"]
            fb = c.post("/api/ingest/sources", json={"name": "fluent-bit"}).json()
        body = "\n".join(json.dumps(winlogbeat(r)) for r in RECORDS)
        with server.client() as anon:
            assert anon.post("/ingest/v1/windows", content=body).status_code == 401
        with server.client("vgi_not-a-real-secret") as c:
            assert c.post("/ingest/v1/windows", content=body).status_code == 401
        with server.client(secret) as c:
            r = c.post("/ingest/v1/windows", content=body)
            assert r.status_code == 200, r.text
            ack = r.json()
            assert ack["received"] == 7 and ack["stored"] == 6 and ack["rejected"] == [], ack
            assert ack["unmapped"] == 1  # Sysmon 13: no DeviceRegistryEvents table yet
            assert c.post("/ingest/v1/windows", content=body).json()["stored"] == 0  # a resend stores nothing
            bad = c.post("/ingest/v1/windows", content=json.dumps([{"winlog": {"channel": SYSMON}}]))
            assert bad.status_code == 400 and "events[0].winlog.event_id: missing" in bad.json()["detail"]
            partly = c.post("/ingest/v1/windows", content=json.dumps([winlogbeat(RECORDS[2]), {"x": 1}]))
            assert partly.status_code == 200 and partly.json()["rejected"][0]["index"] == 1
        device = ack["devices"][0]["id"]
        with server.client(admin) as c:
            machine = c.get(f"/api/machines/{device}").json()
            assert machine["computerDnsName"] == "WIN-DC01.corp.example" and machine["osPlatform"] == "Windows"
            assert machine["version"] == "10.0" and machine["osBuild"] == "20348.2340"
            alerts = c.get("/api/alerts", params={"machineId": device}).json()["value"]
            got = sorted((a["title"], a["firstEventTime"]) for a in alerts)
            assert got == expected  # the same rules on the same records at the same times as `vigil triage`
            mimikatz = next(a for a in alerts if a["title"] == "Mimikatz started")
            assert mimikatz["evidence"][0]["Image"] == "C:\\Users\\bob\\mimikatz.exe"
            tl = c.get(f"/api/machines/{device}/timeline", params={"limit": 100}).json()["value"]
            assert len(tl) == 7  # the six mapped ones, and the good half of the partly bad post
            proc = next(e for e in tl if e.get("ProcessCommandLine", "").startswith("mimikatz"))
            assert proc["FileName"] == "mimikatz.exe" and proc["InitiatingProcessFileName"] == "cmd.exe"
            assert proc["AccountDomain"] == "CORP" and proc["AccountName"] == "bob" and proc["SHA256"] == "ab" * 32
            net = next(e for e in tl if e.get("RemotePort") == 4444)
            assert net["RemoteIP"] == "203.0.113.9" and net["InitiatingProcessFileName"] == "beacon.exe"
            logon = next(e for e in tl if e.get("ActionType") == "LogonFailed")
            assert logon["AccountName"] == "administrator" and logon["RemoteIP"] == "198.51.100.7"
            assert any(e.get("ActionType") == "FileCreated" and e["FileName"] == "loot.zip" for e in tl)
            # Fluent Bit's winevtlog records (EventData by name) from another host, through Elasticsearch's _bulk.
            bulk = "".join('{"create":{}}\n' + json.dumps(fluentbit(r)) + "\n" for r in RECORDS[:2])
        with server.client(fb["secret"]) as c:
            r = c.post("/ingest/v1/windows/_bulk", content=bulk)
            assert r.status_code == 200 and r.json()["errors"] is False and len(r.json()["items"]) == 2
        with server.client(admin) as c:
            ws = next(m for m in c.get("/api/machines").json()["value"] if m["computerDnsName"] == "WS-07.corp.example")
            titles = sorted(a["title"] for a in c.get("/api/alerts", params={"machineId": ws["id"]}).json()["value"])
            assert titles == ["Encoded PowerShell", "Mimikatz started"]
            assert c.delete(f"/api/ingest/sources/{fb['id']}").json()["revoked"] is True
        with server.client(fb["secret"]) as c:
            assert c.post("/ingest/v1/windows/_bulk", content=bulk).status_code == 401
    finally:
        server.stop()
