"""The antivirus's part of the agent ⇄ server contract: the policy and definitions an agent asks for."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from vigil.wire import AGENT_API, _Model

AV_UPDATE_PATH = f"{AGENT_API}/av/update"  # the device group's policy and the version of its bundle
AV_DEFINITIONS_PATH = f"{AGENT_API}/av/definitions"  # the signed bundle itself (application/octet-stream)


class AvUpdateRequest(_Model):
    definitions_version: int = Field(ge=0, description="the version the agent has installed (0: none)")


class AvUpdate(_Model):
    policy: dict[str, Any] = Field(default_factory=dict, description="vigil.av.policy: the group's effective one")
    definitions_version: int | None = Field(default=None, description="the served bundle's version; None: none")
