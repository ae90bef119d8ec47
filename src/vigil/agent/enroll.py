"""Enrollment: check the onboarding package's CA pin, exchange the token for a device credential."""

from __future__ import annotations

import logging
import platform
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from vigil import __version__
from vigil.agent.clock import Clock, SystemClock, iso
from vigil.agent.errors import EnrollmentError
from vigil.agent.identity import Identity, pinned_context, save_identity
from vigil.agent.transport import TRANSPORT_ERRORS, ConnectFailed, HttpClient, ProxyEnv, rejection
from vigil.wire import ENROLL_PATH, ONBOARDING_FORMAT, EnrollRequest, EnrollResponse, OnboardingPackage

log = logging.getLogger(__name__)


def read_package(package_path: Path) -> OnboardingPackage:
    try:
        package = OnboardingPackage.model_validate_json(package_path.read_bytes())
    except OSError as e:
        raise EnrollmentError(f"cannot read the onboarding package {package_path}: {e}") from e
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise EnrollmentError(f"{package_path}: not a valid onboarding package: {where}: {first['msg']}") from e
    if package.format != ONBOARDING_FORMAT:
        raise EnrollmentError(f"{package_path}: format {package.format!r} is not {ONBOARDING_FORMAT!r}")
    if urlsplit(package.server_url).scheme != "https":
        raise EnrollmentError(f"{package_path}: server_url: {package.server_url!r} is not an https:// URL; the agent"
                              " enrolls and reports only over TLS (set the server's public_url to its https://"
                              " address)")
    return package


def _os_release() -> dict[str, str]:
    try:
        return platform.freedesktop_os_release()
    except OSError:
        return {}


def _machine_id() -> str:
    try:
        return Path("/etc/machine-id").read_text().strip()[:128]
    except OSError:
        return ""


def build_request(token: str) -> EnrollRequest:
    release = _os_release()
    return EnrollRequest(
        token=token,
        hostname=(socket.getfqdn() or platform.node() or "localhost")[:255],
        os_platform=platform.system() or "Linux",
        os_version=(release.get("PRETTY_NAME") or platform.release())[:128],
        agent_version=__version__,
        machine_id=_machine_id(),
    )


def enroll(
    package_path: Path,
    state_dir: Path,
    *,
    clock: Clock | None = None,
    timeout: float = 30.0,
    proxy: ProxyEnv | None = None,
) -> Identity:
    """Enroll this device with the server named in the package; saves and returns the identity.

    Raises CaPinMismatch before any network traffic when the package's CA does not match its pin,
    EnrollmentError when the server cannot be reached or is not trusted, and ServerRejected with
    the server's error body when it refuses (expired token, wrong group...).
    """
    package = read_package(package_path)
    ctx = pinned_context(package.ca_cert_pem, package.ca_sha256)
    url = package.server_url.rstrip("/")
    request = build_request(package.token)
    try:
        client = HttpClient(url, ctx, timeout, proxy=proxy)
    except ValueError as e:
        raise EnrollmentError(f"{package_path}: {e}") from e
    try:
        response = client.post(ENROLL_PATH, request.model_dump_json().encode(),
                               {"Content-Type": "application/json"})
    except ConnectFailed as e:
        if isinstance(e.cause, ssl.SSLCertVerificationError):
            raise EnrollmentError(
                f"{url}: the server's certificate is not signed by the pinned CA or does not name this host: {e}"
            ) from e
        raise EnrollmentError(f"cannot reach the server at {url}: {e}") from e
    except TRANSPORT_ERRORS as e:
        raise EnrollmentError(f"enrollment request to {url} failed: {type(e).__name__}: {e}") from e
    finally:
        client.close()
    if response.status_code >= 400:
        raise rejection(response, f"enrollment at {url}")
    try:
        answer = EnrollResponse.model_validate_json(response.content)
    except ValidationError as e:
        raise EnrollmentError(f"{url} answered {response.status_code} with an unreadable body: {e}") from e
    identity = Identity(
        device_id=answer.device_id,
        credential=answer.credential,
        server_url=url,
        ca_cert_pem=package.ca_cert_pem,
        ca_sha256=package.ca_sha256.lower(),
        enrolled_at=iso((clock or SystemClock()).now()),
        group=package.group,
        action_public_key=package.action_public_key,
    )
    path = save_identity(state_dir, identity)
    log.info("enrolled as device %s with %s; identity saved to %s", identity.device_id, url, path)
    return identity
