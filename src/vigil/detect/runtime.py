"""Helpers the generated matchers call, and the tree walker for list-valued fields and match evidence."""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from re import _constants as sre  # type: ignore[attr-defined]  # the stdlib's own parse of a pattern
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import ahocorasick

from vigil.detect.events import Scalar

try:  # the C hot path, built at install; without it the generated Python functions run
    from vigil.detect import _speedups
except ImportError:  # pragma: no cover - exercised where no compiler built the extension
    _speedups = None  # type: ignore[assignment]

# An atom test: (lower-cased value, original value, lower-cased event, original event) -> bool
AtomTest = Callable[[Any, Any, Mapping[str, Scalar], Mapping[str, Scalar]], bool]
# Trees: ("&", children), ("|", children), ("!", child), ("a", atom index, field or None)
Tree = tuple[Any, ...]


def cidr(value: str | None, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    if value is None:
        return False
    try:
        ip = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return any(ip in n for n in networks if n.version == ip.version)


def cidr_test(networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> Callable[[str | None], bool]:
    """`cidr` against fixed networks, its answers kept per address text: logs repeat a few addresses many
    times, and parsing one costs microseconds."""
    seen: dict[str, bool] = {}

    def test(value: str | None) -> bool:
        if value is None:
            return False
        found = seen.get(value)
        if found is None:
            found = cidr(value, networks)
            if len(seen) >= 4096:  # bounded: addresses come from event data
                seen.clear()
            seen[value] = found
        return found

    return test


def _number(value: str) -> float | None:
    try:
        return float(int(value, 0)) if value[:2].lower() in ("0x", "0o", "0b") else float(value)
    except ValueError:
        return None


def compare(value: str | None, op: str, number: float) -> bool:
    if value is None:
        return False
    n = _number(value.strip())
    if n is None:
        return False
    if op == "<":
        return n < number
    if op == "<=":
        return n <= number
    if op == ">":
        return n > number
    if op == ">=":
        return n >= number
    return n != number


def fieldref(value: str | None, other: Scalar | None, mode: str) -> bool:
    if value is None or other is None or other.__class__ is tuple:
        return False
    assert isinstance(other, str)
    if mode == "eq":
        return value == other
    if mode == "startswith":
        return value.startswith(other)
    if mode == "endswith":
        return value.endswith(other)
    return other in value


def contains_any(literals: tuple[str, ...]) -> Callable[[str], bool]:
    """A test for "one of many literals occurs in the value": one automaton pass, not a regex alternation
    (hundreds of alternatives, such as emoji lists, make `re` backtrack at every position). The automaton is
    built at the first test: with the C extension the Python path rarely runs, and SigmaHQ's automata hold
    ~12 MiB."""
    search: Callable[[str], Any] | None = None

    def test(value: str) -> bool:
        nonlocal search
        if search is None:
            auto = ahocorasick.Automaton()
            for lit in literals:
                auto.add_word(lit, None)
            auto.make_automaton()
            search = auto.iter
        for _ in search(value):
            return True
        return False

    return test


def regex_search(pattern: str, flags: int) -> Callable[[str], bool]:
    """A test for `re.search(pattern, value, flags)` finding something.

    A pattern that is literals with `.*` between them (SigmaHQ's obfuscation rules count characters so:
    `\\+.*\\+.*\\+...`) is tested by finding each literal after the previous one, line by line: `re` would try
    every start and every gap length, hundreds of microseconds on a long command line, for a yes or no
    that one left-to-right scan gives (the earliest occurrence of each literal leaves the most room for the
    next)."""
    search = re.compile(pattern, flags).search
    found = _gapped_literals(pattern, flags)
    if found is None:
        return lambda value: search(value) is not None
    literals, flags = found
    dotall = bool(flags & re.DOTALL)
    folded = bool(flags & re.IGNORECASE) and any(c.isalpha() for lit in literals for c in lit)
    if folded:
        literals = [lit.lower() for lit in literals]

    def test(value: str) -> bool:
        if folded:
            if not value.isascii():  # str.lower is not re's case folding past ASCII
                return search(value) is not None
            value = value.lower()
        if dotall or "\n" not in value:
            return _in_order(value, literals)
        return any(_in_order(line, literals) for line in value.split("\n"))

    return test


def _in_order(text: str, literals: list[str]) -> bool:
    pos = 0
    for lit in literals:
        i = text.find(lit, pos)
        if i < 0:
            return False
        pos = i + len(lit)
    return True


def _gapped_literals(pattern: str, flags: int) -> tuple[list[str], int] | None:
    """The literals of a pattern made only of literals and `.*` (or `.*?`) gaps, and its flags (inline ones
    included); None for any other pattern."""
    try:
        parsed = sre_parse.parse(pattern, flags)
    except re.error:
        return None
    flags = parsed.state.flags
    if flags & ~(re.IGNORECASE | re.MULTILINE | re.DOTALL | re.UNICODE):  # MULTILINE only moves ^ and $
        return None
    items = list(parsed)
    gap = [(sre.ANY, None)]
    literals: list[str] = []
    run: list[str] = []
    for op, arg in items:
        if op is sre.LITERAL:
            run.append(chr(arg))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and arg[:2] == (0, sre.MAXREPEAT) and list(arg[2]) == gap:
            if run:
                literals.append("".join(run))
                run = []
        else:
            return None
    if run:
        literals.append("".join(run))
    ascii_only = all(lit.isascii() for lit in literals)
    if not literals or not ascii_only or (not flags & re.DOTALL and any("\n" in lit for lit in literals)):
        return None
    return literals, flags


def literal_set(literals: tuple[str, ...], cased: bool = False) -> Any:
    """Many literals for the C evaluator's contains test: its one-pass matcher, folding case unless `cased`
    (a tuple without the extension, which then never reads it)."""
    return _speedups.Literals(literals, folded=not cased) if _speedups is not None else literals


def all_values(event: Mapping[str, Scalar]) -> Iterator[str]:
    """Every string of an event, list elements included: what a keyword search looks at."""
    for v in event.values():
        if v.__class__ is tuple:
            yield from v
        else:
            yield v  # type: ignore[misc]


def command_words(command_line: str) -> list[str]:
    """argv back from a command line the agent joined with shell quoting (`procfs.join_argv`); a line cut
    inside a quote (a truncated argv) falls back to splitting at spaces."""
    if "'" not in command_line and '"' not in command_line and "\\" not in command_line:
        return command_line.split()
    try:
        return shlex.split(command_line)
    except ValueError:
        return command_line.split()


def derive_fields(derived: tuple[tuple[str, str, str], ...], low: dict[str, Scalar], orig: dict[str, Scalar]) -> None:
    """Add the fields a source computes per event (mappings.DERIVATIONS) to an event's views; an argument past
    the end of argv stays absent."""
    words: dict[str, list[str]] = {}
    for name, kind, column in derived:
        line = orig.get(column)
        if line.__class__ is not str:
            continue
        argv = words.get(column)
        if argv is None:
            argv = words[column] = command_words(line)
        if kind == "comm":
            value = argv[0].rpartition("/")[2][:15] if argv else None
        elif name == "argc":
            value = str(len(argv))
        else:
            n = int(name[1:])
            value = argv[n] if n < len(argv) else None
        if value is not None:
            orig[name] = value
            low[name] = value.lower()


NAMESPACE: dict[str, Any] = {
    "_cidr": cidr_test,
    "_cmp": compare,
    "_fref": fieldref,
    "_vals": all_values,
    "_anyin": contains_any,
    "_research": regex_search,
    "_lits": literal_set,
    "ipaddress": ipaddress,
}


def evaluate(
    tree: Tree,
    atoms: list[AtomTest],
    low: Mapping[str, Scalar],
    orig: Mapping[str, Scalar],
    trace: set[str] | None = None,
) -> bool:
    """Walk a rule's tree; a list-valued field matches when any element does.

    With `trace`, the fields of atoms that held (outside negations) are collected.
    """
    kind = tree[0]
    if kind == "a":
        test = atoms[tree[1]]
        field = tree[2]
        if field is None:
            ok = test(None, None, low, orig)
        else:
            v = low.get(field)
            if v.__class__ is tuple:
                o = orig[field]
                ok = any(test(vi, oi, low, orig) for vi, oi in zip(v, o, strict=True))
            else:
                ok = test(v, orig.get(field), low, orig)
        if ok and trace is not None and field is not None:
            trace.add(field)
        return ok
    if kind == "&":
        acc: set[str] | None = set() if trace is not None else None
        for child in tree[1]:
            if not evaluate(child, atoms, low, orig, acc):
                return False
        if trace is not None and acc:
            trace |= acc
        return True
    if kind == "|":
        for child in tree[1]:
            local: set[str] | None = set() if trace is not None else None
            if evaluate(child, atoms, low, orig, local):
                if trace is not None and local:
                    trace |= local
                return True
        return False
    return not evaluate(tree[1], atoms, low, orig, None)
