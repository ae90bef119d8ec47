"""The audit log as administrators read it: newest entries, the whole chain for export, and its verification."""

from __future__ import annotations

from collections.abc import Iterator

from vigil.app.paging import Page, PageRequest
from vigil.app.ports import LoggedAudit, Store
from vigil.app.principal import Principal
from vigil.core.audit import ChainReport
from vigil.core.rbac import Permission

# Reading the log is an administrator's right, as changing portal settings is.
READ = Permission.MANAGE_PORTAL_SETTINGS


def recent(store: Store, who: Principal, action: str | None = None, limit: int = 200) -> list[LoggedAudit]:
    """The newest ``limit`` entries, only those of ``action`` when given."""
    who.require(READ)
    with store.begin() as uow:
        return list(uow.audit.log(action or None, limit))


AUDIT_SORTS = ("seq", "actor", "action")


def page_log(store: Store, who: Principal, req: PageRequest, action: str | None = None) -> Page[LoggedAudit]:
    """One page of the log, paged, sorted and searched by the store (every entry kept, not the newest few)."""
    who.require(READ)
    req = req.checked(AUDIT_SORTS)
    with store.begin() as uow:
        return uow.audit.page(action or None, req)


def verify(store: Store, who: Principal) -> ChainReport:
    who.require(READ)
    with store.begin() as uow:
        return uow.audit.verify()


def export(store: Store, who: Principal) -> Iterator[LoggedAudit]:
    """Every entry oldest first, read page by page as the caller consumes them.

    The permission is checked now, not at the first entry, so a refused caller gets its refusal before a
    response starts streaming.
    """
    who.require(READ)

    def entries() -> Iterator[LoggedAudit]:
        with store.begin() as uow:
            yield from uow.audit.chain()

    return entries()
