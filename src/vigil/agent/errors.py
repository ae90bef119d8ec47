"""The agent's exception tree.

AgentError
├── EnrollmentError          the onboarding package or the enrollment exchange failed
│   └── CaPinMismatch        the package's CA certificate does not match its pin
├── IdentityError            no usable identity in the state directory (not enrolled?)
├── ServerRejected           the server answered with an error body (status, error, detail, field)
├── SpoolError               the local spool database cannot be used
└── SensorError
    ├── SensorUnavailable    a sensor's capability probe failed; the reason says why
    └── DuplicateSensor      two sensors registered under one name
"""

from __future__ import annotations

from vigil.core.registry import DuplicateName


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class EnrollmentError(AgentError):
    pass


class CaPinMismatch(EnrollmentError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"the onboarding package's CA certificate has SHA-256 {actual}, but the package pins {expected};"
            " refusing to trust it (was the package altered or mixed with another server's?)"
        )
        self.expected = expected
        self.actual = actual


class IdentityError(AgentError):
    pass


class ServerRejected(AgentError):
    """The server refused a request; carries its ``ErrorBody`` fields."""

    def __init__(self, status: int, error: str, detail: str, field: str | None, where: str) -> None:
        at = f" (field {field})" if field else ""
        super().__init__(f"{where}: server answered {status} {error}: {detail}{at}")
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field


class SpoolError(AgentError):
    pass


class SensorError(AgentError):
    pass


class SensorUnavailable(SensorError):
    pass


class DuplicateSensor(SensorError, DuplicateName):
    pass
