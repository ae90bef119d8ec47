"""Errors the store raises, so no caller needs to know the database library's own exceptions.

StoreError
├── NotFound         no row for the key asked for
├── Conflict         a unique key or guarded update refused the write
│   └── DuplicateBatch   a telemetry batch id already stored
├── InvalidChange    a change the store's rules refuse (merging an incident into itself, ...); the message says why
└── Unavailable      the database could not be reached
"""

from __future__ import annotations


class StoreError(Exception):
    pass


class NotFound(StoreError, LookupError):
    pass


class Conflict(StoreError):
    pass


class DuplicateBatch(Conflict):
    pass


class InvalidChange(StoreError, ValueError):
    pass


class Unavailable(StoreError):
    pass


class NotConfiguredIssuer(StoreError):
    """A unit of work asked to issue a response action where no signer was wired in."""
