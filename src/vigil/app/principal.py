"""Who is asking: the caller every service operation takes, from a signed-in analyst to the local CLI."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from vigil.app.errors import Forbidden
from vigil.core.rbac import Permission


@dataclass(frozen=True)
class Principal:
    """A caller: the actor audit records name, its permissions and the device groups it may see."""

    actor: str
    permissions: frozenset[Permission]
    # Device groups the caller may see; None means every group.
    device_group_ids: frozenset[int] | None = None
    is_admin: bool = False
    source_ip: str | None = None
    # The user behind the actor (an API token's owner); the name a gate override or created_by records.
    username: str = ""
    # The API token the caller presents, if any: a token may not mint other tokens.
    api_token_id: int | None = None

    def require(self, permission: Permission) -> None:
        """Refuse unless the caller holds ``permission``: the check every service operation starts with."""
        if permission not in self.permissions:
            raise Forbidden(f"this needs the permission '{permission}'", permission=permission)

    def sees_group(self, group_id: int) -> bool:
        return self.device_group_ids is None or group_id in self.device_group_ids


def os_user() -> str:
    """The OS user and host a CLI change is audited under: the CLI has no sign-in of its own."""
    try:
        user = os.getlogin()
    except OSError:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def local_cli(who: str | None = None) -> Principal:
    """The operator at the server's console: whoever can read the data directory administers Vigil anyway.

    It holds every permission and sees every group, but it passes through the same services, so the gates
    (sign-off, rings) and the audit log apply to it as to anyone; it is audited as ``cli:user@host``.
    """
    name = who or os_user()
    return Principal(f"cli:{name}", frozenset(Permission), None, is_admin=True, username=f"cli:{name}")
