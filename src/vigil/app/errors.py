"""Domain errors the services raise; each adapter maps them in one table (HTTP, portal page, CLI exit code).

AppError
├── Forbidden        the caller lacks the permission (``permission`` says which)
├── NotFound         no such object, or one the caller may not see (the two are indistinguishable)
├── Ambiguous        a reference matches several objects
├── InvalidInput     a value is wrong; ``field`` names it
├── GateClosed       a plan gate (sign-off, rings) refuses the change
├── Refused          the deployment plan refuses the step (out of its order, criteria unmet, not built; says why)
└── NotConfigured    the server lacks something the operation needs (a signing key, ...)
"""

from __future__ import annotations

from vigil.core.rbac import Permission


class AppError(Exception):
    """A refused operation: what was wrong and, when one input caused it, which field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


class Forbidden(AppError):
    def __init__(self, message: str, permission: Permission | None = None, field: str | None = None) -> None:
        super().__init__(message, field)
        self.permission = permission


class NotFound(AppError):
    pass


class Ambiguous(AppError):
    pass


class InvalidInput(AppError):
    pass


class GateClosed(AppError):
    pass


class Refused(AppError):
    pass


class NotConfigured(AppError):
    pass
