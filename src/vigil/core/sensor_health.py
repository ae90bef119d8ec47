"""Whether a device's sensor is healthy, from what the agent really reports in its heartbeat.

The heartbeat's ``sensors`` map has one line per sensor, ``"<state>"`` or ``"<state>: <reason>"`` with state
``active``, ``degraded`` or ``unavailable`` (agent/sensors/base.py ``SensorHealth``), plus one line
``resource_budget`` that is not a sensor: ``"within budget: …"`` or ``"throttling: …"`` (agent/budget.py
``describe``). Its ``counters`` count every event produced and every one dropped, by reason.
"""

from __future__ import annotations

from typing import Any

BUDGET_KEY = "resource_budget"
# Not a sensor either: what the agent sees of the incumbent antivirus/EDR (agent/incumbent.py).
INCUMBENT_KEY = "incumbent_security"
NOT_SENSORS = (BUDGET_KEY, INCUMBENT_KEY)
WITHIN_BUDGET = "within budget"
MAX_LOSS = 0.001  # at most 0.1 % of events dropped


def event_loss(counters: dict[str, Any] | None) -> tuple[int, int]:
    """(dropped, produced) from the heartbeat's counters; a malformed value counts as nothing."""
    c = counters or {}
    dropped_by = c.get("dropped") or {}
    dropped = sum(v for v in dropped_by.values() if isinstance(v, int)) if isinstance(dropped_by, dict) else 0
    produced = c.get("produced", 0)
    return dropped, produced if isinstance(produced, int) else 0


def sensor_problems(sensors: dict[str, Any] | None, counters: dict[str, Any] | None) -> list[str]:
    """Why a device's sensor is not healthy; empty means healthy.

    Healthy is: some sensor reported, every sensor ``active``, the resource budget ``within budget``, and at
    most 0.1 % of the events it produced dropped.
    """
    if not sensors:
        return ["no sensor health reported yet"]
    out = []
    for name, line in sorted(sensors.items()):
        text = str(line)
        if name == BUDGET_KEY:
            if not text.startswith(WITHIN_BUDGET):
                out.append(f"resource budget: {text}")
            continue
        if name == INCUMBENT_KEY:
            continue
        state = text.split(":", 1)[0].strip()
        if state != "active":
            out.append(f"{name}: {text}")
    if not any(name not in NOT_SENSORS for name in sensors):
        out.append("no sensor reported, only the resource budget")
    dropped, produced = event_loss(counters)
    if dropped and dropped > MAX_LOSS * produced:
        out.append(f"event loss: {dropped} of {produced} event(s) dropped (at most 0.1 %)")
    return out


def incumbent(sensors: dict[str, Any] | None) -> str | None:
    """The incumbent security software the agent reported, or None when it found none (or did not look)."""
    line = str((sensors or {}).get(INCUMBENT_KEY) or "")
    return line if line.startswith("detected") else None
