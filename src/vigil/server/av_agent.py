"""The agent API's antivirus part: each device gets its group's effective policy and signed definition bundle."""

from __future__ import annotations

import logging
import threading

from fastapi import APIRouter, Request
from fastapi.responses import Response

from vigil.app import antivirus as av_service
from vigil.app.errors import InvalidInput
from vigil.av.bundle import BundleError, public_key_from_text, read_header
from vigil.av.policy import BundleShelf
from vigil.deploy.signing import public_key
from vigil.server import app_edge as edge
from vigil.server.auth import authenticated_device, services
from vigil.server.detection import device_group_lookup
from vigil.server.errors import APIError
from vigil.wire.av import AV_DEFINITIONS_PATH, AV_UPDATE_PATH, AvUpdate, AvUpdateRequest

log = logging.getLogger(__name__)
router = APIRouter(tags=["agent"])
_lookups: dict[int, object] = {}
_lock = threading.Lock()


def _group_of(request: Request, device_id: str) -> str | None:
    svc = services(request)
    with _lock:  # one cached lookup per server (its engine)
        lookup = _lookups.get(id(svc.engine))
        if lookup is None:
            lookup = _lookups[id(svc.engine)] = device_group_lookup(svc.engine)
    return lookup(device_id)  # type: ignore[operator, no-any-return]


_versions: dict[tuple[str, int, int], int | None] = {}  # (path, mtime_ns, size) -> verified version


def _bundle_version(request: Request, group: str | None) -> int | None:
    """The version of the bundle this group is served, verified with the server's signing key (cached by mtime)."""
    path = BundleShelf(services(request).settings.data_dir).for_group(group)
    if path is None:
        return None
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _versions:
        return _versions[key]
    key_text = public_key(services(request).settings)
    try:
        header = read_header(path.read_bytes(), [public_key_from_text(key_text)] if key_text else [], str(path))
        version: int | None = int(str(header["version"]))
    except (BundleError, OSError) as e:
        log.error("antivirus bundle %s not served: %s", path, e)
        version = None
    with _lock:
        _versions[key] = version
    return version


@router.post(AV_UPDATE_PATH, response_model=AvUpdate)
def av_update(body: AvUpdateRequest, request: Request, device_id: str = authenticated_device) -> AvUpdate:
    group = _group_of(request, device_id)
    try:
        policy = av_service.effective_by_name(edge.store(request), group)
    except InvalidInput as e:  # a stored policy this server cannot read (written by a newer one?)
        log.error("antivirus policy unusable, none served: %s", e)
        raise APIError(503, "policy_unavailable", "the server's antivirus policy is unusable; try later") from None
    return AvUpdate(policy=policy.as_dict(), definitions_version=_bundle_version(request, group))


@router.post(AV_DEFINITIONS_PATH)
def av_definitions(request: Request, device_id: str = authenticated_device) -> Response:
    path = BundleShelf(services(request).settings.data_dir).for_group(_group_of(request, device_id))
    if path is None:
        raise APIError(404, "not_found", "no antivirus definitions are published for this device")
    return Response(path.read_bytes(), media_type="application/octet-stream")
