"""The audit hash chain shows edits, reordering and gaps; a pruned start is accepted as its anchor."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from vigil.core.audit import GENESIS, AuditEntry, entry_hash, verify_chain

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def chain(n: int) -> list[tuple[AuditEntry, str]]:
    out: list[tuple[AuditEntry, str]] = []
    prev = GENESIS
    for i in range(1, n + 1):
        e = AuditEntry(i, T0 + timedelta(seconds=i), "admin", "127.0.0.1", "device_group.put", "device_group",
                       f"g{i}", {"rank": i}, {"rank": i + 1}, None, prev)
        h = entry_hash(e)
        out.append((e, h))
        prev = h
    return out


def test_an_untouched_chain_verifies() -> None:
    assert verify_chain(chain(5), anchor=GENESIS).ok


def test_an_edited_entry_is_found() -> None:
    c = chain(5)
    e, h = c[2]
    c[2] = (dataclasses.replace(e, after={"rank": 99}), h)
    r = verify_chain(c, anchor=GENESIS)
    assert not r.ok and r.first_bad_seq == 3 and "hash" in (r.problem or "")


def test_a_removed_entry_is_found() -> None:
    c = chain(5)
    del c[1]
    r = verify_chain(c, anchor=GENESIS)
    assert not r.ok and r.first_bad_seq == 3 and r.problem == "entry 2 is missing"


def test_a_rehashed_forgery_breaks_the_link_to_the_next_entry() -> None:
    c = chain(4)
    e, _ = c[1]
    forged = dataclasses.replace(e, actor="mallory")
    c[1] = (forged, entry_hash(forged))
    r = verify_chain(c, anchor=GENESIS)
    assert not r.ok and r.first_bad_seq == 3


def test_a_pruned_log_verifies_from_its_oldest_entry() -> None:
    assert verify_chain(chain(6)[3:]).ok
    assert not verify_chain(chain(6)[3:], anchor=GENESIS).ok
