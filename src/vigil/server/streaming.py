"""The server's streaming export: the stream worker built from the server's services, started with the app."""

from __future__ import annotations

import hashlib
import socket
import uuid

from vigil.integrations.exporters import Context
from vigil.integrations.stream import StreamWorker
from vigil.server.services import Services


def tenant_id(svc: Services) -> str:
    """A stable id for this Vigil in each record's ``tenantId``, derived from (and revealing nothing of) its key."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, hashlib.sha256(b"vigil-tenant" + svc.secret_key).hexdigest()))


def stream_worker(svc: Services) -> StreamWorker:
    ctx = Context(tenant_id(svc), socket.gethostname(), svc.version)
    return StreamWorker(svc.engine, svc.clock, ctx)
