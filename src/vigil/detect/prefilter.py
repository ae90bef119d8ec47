"""Prefilter planning: per rule, the cheapest set of facts one of which any matching event must show."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from vigil.detect.ir import And, Atom, Node, Not, Op, Or

try:  # the stdlib regex parser: private, but the only parser that agrees exactly with `re`
    from re import _constants as _sre_c  # type: ignore[attr-defined]
    from re import _parser as _sre_p  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python < 3.11
    _sre_c = _sre_p = None


class NeedKind(StrEnum):
    EQ = "eq"  # the field's lower-cased value (or a list element) equals the text
    SUB = "sub"  # the text occurs in the field's lower-cased value (field None: in any value)
    HAS = "has"  # the field is present


@dataclass(frozen=True)
class Need:
    """One fact about an event; a rule's requirement is a set of these, one of which must hold."""

    kind: NeedKind
    field: str | None
    text: str = ""
    # SUB only: also holds when the value is not ASCII. For case-insensitive regexes, where a few
    # non-ASCII letters (the Kelvin sign, long s, dotless i) match ASCII ones but lower-case apart.
    or_unicode: bool = False


Requirement = frozenset[Need]

# Literals this short occur in most events: a requirement made only of them prunes nothing.
_MIN_USEFUL_LITERAL = 3


# Path parts found in most paths and command lines of a Windows host, and the programs every host runs all
# day: long, yet no rarer than a short literal.
_COMMON_PARTS = frozenset((
    "windows", "system32", "syswow64", "program files", "program files (x86)", "programdata", "users", "appdata",
    "local", "roaming", "temp", "microsoft", "exe", "dll", "c:", "c:\\windows", "c:\\windows\\system32",
    "windows\\system32", "windows\\syswow64", "cmd.exe", "powershell.exe", "rundll32.exe", "svchost.exe",
    "explorer.exe", "services.exe", "conhost.exe", "dllhost.exe", "taskhostw.exe", "msiexec.exe",
))


# Costs estimate the share of events (per mille) that show a fact: a rule is indexed by the requirement whose
# facts, summed, the fewest events show. A field's presence holds for nearly every event of its source, an
# equality on a few-valued field for a large share; common path parts turn up in most paths.


def _literal_cost(text: str) -> float:
    # Longer literals are rarer; a path separator or extension alone says little about an event.
    # Non-ASCII characters (emoji, homoglyphs) are rare in event data: each counts as several.
    # A parent-directory step ("\\..\\windows\\") is rare in paths and command lines, whatever it leads to.
    core = text if "..\\" in text or "../" in text else text.strip("\\/. -")
    n = len(core) + 3 * sum(not c.isascii() for c in core)
    if core.lower() in _COMMON_PARTS:
        return 150.0
    if n < _MIN_USEFUL_LITERAL:
        return 40.0
    return 2.0 + 40.0 / n


# Fields with a handful of values (event ids, integrity levels, logon types...): an equality on one of them
# holds for a large share of events, so a rule is better recognised by any literal of its other tests.
_FEW_VALUED_FIELDS = frozenset(f.lower() for f in (
    "EventID", "Channel", "Provider_Name", "Level", "Task", "Opcode", "Keywords", "Version", "EventType",
    "IntegrityLevel", "LogonType", "Status", "SubStatus", "ObjectType", "AccessMask", "AccessList",
    "ShareName", "Protocol", "Initiated", "SourceIsIpv6", "DestinationIsIpv6", "ServiceType", "StartType",
    "ActionType", "RemoteIPType", "ProcessIntegrityLevel", "InitiatingProcessIntegrityLevel",
    "ProcessTokenElevation", "IsInitiatingProcessRemoteSession", "Company", "Product", "Signed",
    "SignatureStatus", "User", "LogonId", "TerminalSessionId",
))


def need_cost(need: Need) -> float:
    if need.kind is NeedKind.EQ:
        return 300.0 if need.field is not None and need.field.lower() in _FEW_VALUED_FIELDS else 1.0
    if need.kind is NeedKind.HAS:
        return 400.0
    return _literal_cost(need.text) * (3.0 if need.field is None else 1.0)


def requirement_cost(req: Requirement) -> float:
    return sum(need_cost(n) for n in req)


def requirement(node: Node) -> Requirement | None:
    """Facts one of which every event matching `node` shows, or None when nothing is certain."""
    if isinstance(node, Atom):
        return _atom_requirement(node)
    if isinstance(node, Not):
        return None  # a negation holds on events that show nothing in particular
    if isinstance(node, Or):
        out: set[Need] = set()
        for child in node.children:
            r = requirement(child)
            if r is None:
                return None
            out |= r
        return frozenset(out)
    assert isinstance(node, And)
    best: Requirement | None = None
    for child in node.children:
        r = requirement(child)
        if r is not None and (best is None or requirement_cost(r) < requirement_cost(best)):
            best = r
    return best


def _safe_literal(text: str, cased: bool) -> str | None:
    # A cased test runs on the original value; the prefilter sees the lower-cased one. Lower-casing is
    # per character only for ASCII (final sigma, dotted I...), so only ASCII literals carry over.
    if not cased:
        return text
    return text.lower() if text.isascii() else None


def _atom_requirement(a: Atom) -> Requirement | None:
    f = a.field
    has = frozenset({Need(NeedKind.HAS, f)}) if f is not None else None
    op = a.op
    if op is Op.EQ:
        if f is None:  # pragma: no cover - keyword values are always CONTAINS or GLOB
            return None
        return frozenset(Need(NeedKind.EQ, f, v.lower() if a.cased else v) for v in a.values)
    if op in (Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH):
        needs = set()
        for v in a.values:
            lit = _safe_literal(v, a.cased)
            if lit is None or not lit:
                return has
            needs.add(Need(NeedKind.SUB, f, lit))
        return frozenset(needs)
    if op in (Op.GLOB, Op.REGEX):
        needs = set()
        for v in a.values:
            lit, ignore_case = regex_literal(v, a.flags)
            lit = _safe_literal(lit, a.cased or op is Op.REGEX) if lit else None
            if not lit:
                return has
            needs.add(Need(NeedKind.SUB, f, lit, or_unicode=ignore_case))
        return frozenset(needs)
    if op in (Op.ANY, Op.EXISTS, Op.CIDR, Op.CMP, Op.FIELDREF, Op.TIMEPART):
        return has
    return None  # NULL and NOT_EXISTS hold on absent fields


def regex_literal(pattern: str, flags: int = 0) -> tuple[str, bool]:
    """The longest run of plain characters that every match of `pattern` contains ('' if none), and
    whether the pattern ignores case."""
    if _sre_p is None:  # pragma: no cover - Python < 3.11
        return "", False
    try:
        parsed = _sre_p.parse(pattern, flags)
    except (re.error, RecursionError, OverflowError):
        return "", False
    if parsed.state.flags & _sre_c.SRE_FLAG_VERBOSE:
        return "", False
    runs: list[str] = []
    _required_runs(parsed.data, runs)
    return max(runs, key=len, default=""), bool(parsed.state.flags & _sre_c.SRE_FLAG_IGNORECASE)


def _required_runs(items: Sequence[tuple[Any, Any]], runs: list[str]) -> None:
    """Append the runs of consecutive literal characters of a sequence, and of parts repeated at least once."""
    run: list[str] = []
    for code, arg in items:
        if code is _sre_c.LITERAL:
            run.append(chr(arg))
            continue
        if run:
            runs.append("".join(run))
            run = []
        if code in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT, _sre_c.POSSESSIVE_REPEAT):
            if arg[0] >= 1:  # (min, max, items): a part that must occur at least once
                _required_runs(arg[2], runs)
        elif code is _sre_c.SUBPATTERN:
            if not arg[1] and not arg[2]:  # (group, add flags, del flags, items); own flags may change case
                _required_runs(arg[3], runs)
        elif code is _sre_c.ATOMIC_GROUP:
            _required_runs(arg, runs)
    if run:
        runs.append("".join(run))


@dataclass(frozen=True)
class BucketPlan:
    """How one index bucket picks candidate bindings: plain data, rebuilt into lookups at run time.

    `always`: bindings run on every event; `eq`: field -> value -> bindings; `sub`: field (None: any
    field) -> literal -> bindings, searched with one automaton per field; `has`: field -> bindings;
    `unicode`: field (None: any) -> bindings to run when that value is not ASCII.
    """

    always: tuple[int, ...]
    eq: tuple[tuple[str, tuple[tuple[str, tuple[int, ...]], ...]], ...]
    sub: tuple[tuple[str | None, tuple[tuple[str, tuple[int, ...]], ...]], ...]
    has: tuple[tuple[str, tuple[int, ...]], ...]
    unicode: tuple[tuple[str | None, tuple[int, ...]], ...] = ()


def plan_bucket(members: Sequence[tuple[int, Node]]) -> BucketPlan:
    """Group the requirements of a bucket's bindings (binding index, tree) into lookup tables."""
    always: list[int] = []
    eq: dict[str, dict[str, list[int]]] = {}
    sub: dict[str | None, dict[str, list[int]]] = {}
    has: dict[str, list[int]] = {}
    unicode: dict[str | None, list[int]] = {}
    for index, tree in members:
        req = requirement(tree)
        if req is None:
            always.append(index)
            continue
        for need in req:
            if need.kind is NeedKind.EQ:
                assert need.field is not None
                eq.setdefault(need.field, {}).setdefault(need.text, []).append(index)
            elif need.kind is NeedKind.SUB:
                sub.setdefault(need.field, {}).setdefault(need.text, []).append(index)
                if need.or_unicode:
                    unicode.setdefault(need.field, []).append(index)
            else:
                assert need.field is not None
                has.setdefault(need.field, []).append(index)
    return BucketPlan(
        always=tuple(always),
        eq=tuple((f, _freeze(t)) for f, t in sorted(eq.items())),
        sub=tuple((f, _freeze(t)) for f, t in sorted(sub.items(), key=lambda kv: kv[0] or "")),
        has=tuple((f, tuple(sorted(set(ids)))) for f, ids in sorted(has.items())),
        unicode=tuple((f, tuple(sorted(set(ids)))) for f, ids in sorted(unicode.items(), key=lambda kv: kv[0] or "")),
    )


Table = tuple[tuple[str, tuple[int, ...]], ...]  # text -> binding indexes


def merge_plans(plans: Sequence[BucketPlan]) -> BucketPlan:
    """One plan giving every candidate that any of `plans` gives: one pass over an event instead of several."""
    def tables(groups: Iterable[tuple[Any, Table]]) -> dict[Any, dict[str, list[int]]]:
        out: dict[Any, dict[str, list[int]]] = {}
        for field, table in groups:
            merged = out.setdefault(field, {})
            for text, ids in table:
                merged.setdefault(text, []).extend(ids)
        return out

    def ids_by_field(groups: Iterable[tuple[Any, tuple[int, ...]]]) -> dict[Any, list[int]]:
        out: dict[Any, list[int]] = {}
        for field, ids in groups:
            out.setdefault(field, []).extend(ids)
        return out

    eq = tables(t for p in plans for t in p.eq)
    sub = tables(t for p in plans for t in p.sub)
    has = ids_by_field(h for p in plans for h in p.has)
    unicode = ids_by_field(u for p in plans for u in p.unicode)
    return BucketPlan(
        always=tuple(sorted({i for p in plans for i in p.always})),
        eq=tuple((f, _freeze(t)) for f, t in sorted(eq.items())),
        sub=tuple((f, _freeze(t)) for f, t in sorted(sub.items(), key=lambda kv: kv[0] or "")),
        has=tuple((f, tuple(sorted(set(ids)))) for f, ids in sorted(has.items())),
        unicode=tuple((f, tuple(sorted(set(ids)))) for f, ids in sorted(unicode.items(), key=lambda kv: kv[0] or "")),
    )


def _freeze(table: dict[str, list[int]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((k, tuple(sorted(set(v)))) for k, v in sorted(table.items()))


def requirement_stats(trees: Iterable[Node]) -> dict[str, int]:
    """How many trees get each kind of prefilter (for the benchmark and docs)."""
    out = {"always": 0, "eq": 0, "sub": 0, "has": 0}
    for tree in trees:
        req = requirement(tree)
        if req is None:
            out["always"] += 1
        else:
            kinds = {n.kind for n in req}
            out[min(kinds, key=lambda k: ("eq", "sub", "has").index(k))] += 1
    return out
