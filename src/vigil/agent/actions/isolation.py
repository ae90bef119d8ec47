"""Network isolation: one atomic nftables table that leaves only the Vigil server (and an allow-list)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vigil.agent.actions.base import ActionContext, ActionFailed, ActionSettings, Outcome
from vigil.core.actions import AllowEntry, parse_allow_entry
from vigil.wire import ActionCommand

TABLE = "vigil_isolation"
STATE_FILE = "isolation.json"


def management_endpoints(server_url: str) -> list[tuple[str, int]]:
    """The server's addresses and port, resolved now: while isolated, DNS is not reachable."""
    parts = urlsplit(server_url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise ActionFailed(f"cannot resolve the Vigil server {host!r} to keep it reachable: {e}") from e
    return sorted({(str(info[4][0]), port) for info in infos})


def _family(addr: str) -> str:
    return "ip6" if ":" in addr else "ip"


def _allow_rule(entry: AllowEntry) -> str:
    fam = "ip6" if entry.network.version == 6 else "ip"
    net = str(entry.network)
    if entry.port is None:
        return f"{fam} daddr {net} accept"
    return f"{fam} daddr {net} meta l4proto {{ tcp, udp }} th dport {entry.port} accept"


def render_ruleset(management: list[tuple[str, int]], allow: list[str]) -> str:
    """The whole table in one nft transaction: re-creating it replaces any older copy atomically."""
    out_rules = [f"{_family(a)} daddr {a} tcp dport {p} accept" for a, p in management]
    in_rules = [f"{_family(a)} saddr {a} tcp sport {p} accept" for a, p in management]
    out_rules += [_allow_rule(parse_allow_entry(a)) for a in allow]
    def chain(name: str, hook: str, iface: str, rules: list[str]) -> str:
        body = "\n".join(f"    {r}" for r in [f'{iface} "lo" accept', "ct state established,related accept", *rules])
        return f"  chain {name} {{\n    type filter hook {hook} priority filter; policy drop;\n{body}\n  }}\n"
    return (
        f"table inet {TABLE}\ndelete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        + chain("input", "input", "iif", in_rules)
        + chain("output", "output", "oif", out_rules)
        + "  chain forward {\n    type filter hook forward priority filter; policy drop;\n  }\n"
        + "}\n"
    )


def _nft(settings: ActionSettings, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", settings.isolation_netns] if settings.isolation_netns else []
    try:
        return subprocess.run([*prefix, "nft", *args], input=stdin, capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ActionFailed(f"nft could not be run: {e}") from e


def _apply(settings: ActionSettings, ruleset: str) -> None:
    done = _nft(settings, ["-f", "-"], ruleset)
    if done.returncode != 0:
        raise ActionFailed(f"nft refused the isolation table: {done.stderr.strip()}")


def table_present(settings: ActionSettings) -> bool:
    return _nft(settings, ["list", "table", "inet", TABLE]).returncode == 0


def _state_path(settings: ActionSettings) -> Path:
    return settings.state_dir / STATE_FILE


def _save(settings: ActionSettings, state: dict[str, Any]) -> None:
    tmp = _state_path(settings).with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, _state_path(settings))


def isolate(settings: ActionSettings, isolation_type: str, allow: list[str], action_id: str = "") -> dict[str, Any]:
    management = management_endpoints(settings.server_url)
    ruleset = render_ruleset(management, allow if isolation_type == "Selective" else [])
    # State first: if the agent dies right after nft, the next start still knows to keep the table.
    state = {"action_id": action_id, "type": isolation_type, "allow": allow, "ruleset": ruleset,
             "management": [f"{a} port {p}" for a, p in management]}
    _save(settings, state)
    _apply(settings, ruleset)
    return state


def release(settings: ActionSettings) -> bool:
    """Remove the table; True if the device was isolated."""
    was = table_present(settings) or _state_path(settings).exists()
    if table_present(settings):
        done = _nft(settings, ["delete", "table", "inet", TABLE])
        if done.returncode != 0:
            raise ActionFailed(f"nft could not remove the isolation table: {done.stderr.strip()}")
    with contextlib.suppress(FileNotFoundError):
        _state_path(settings).unlink()
    return was


def restore(ctx: ActionContext) -> str | None:
    """At agent start: re-apply a persisted isolation (e.g. after a reboot flushed the ruleset)."""
    try:
        state = json.loads(_state_path(ctx.settings).read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise ActionFailed(f"{_state_path(ctx.settings)} is unreadable: {e}") from e
    _apply(ctx.settings, state["ruleset"])
    return f"{state['type']} isolation (action {state.get('action_id')})"


def _isolate(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    kind = str(cmd.parameters.get("IsolationType", "Full"))
    allow = [str(a) for a in cmd.parameters.get("AllowList", [])]
    state = isolate(ctx.settings, kind, allow, cmd.action_id)
    return Outcome(f"{kind} isolation applied; the Vigil server stays reachable at "
                   f"{', '.join(state['management'])}" + (f"; also allowed: {', '.join(allow)}" if allow else ""),
                   {"ruleset": state["ruleset"], "management": state["management"]})


def _release(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    return Outcome("released from isolation" if release(ctx.settings) else "the device was not isolated")


HANDLERS = {"Isolate": _isolate, "Unisolate": _release}
