"""Binding a rule to an event source: fields the source lacks are absent, its constants known, dead branches
pruned at compile time."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.detect.codegen import constant_holds
from vigil.detect.ir import FALSE, TRUE, And, Atom, Node, Not, Op, Or, fields_of, rename_fields, simplify
from vigil.detect.mappings import EventSource

# Tests that hold on an absent field: `field: null` and `|exists: false`. Every other test is false there.
_HOLD_WHEN_ABSENT = frozenset({Op.NULL, Op.NOT_EXISTS})


@dataclass(frozen=True)
class Specialized:
    """A rule's tree on one source: in the source's field names, FALSE when no branch can match there."""

    tree: Node
    absent: tuple[str, ...]  # Sigma fields the rule names that the source does not carry
    fixed: tuple[str, ...]  # `field=value` constants of the source that the rule tests
    derived: tuple[tuple[str, str, str], ...] = ()  # (field, derivation, column) the tree reads

    @property
    def bound(self) -> bool:
        return self.tree != FALSE



def why_unbound(tried: list[tuple[EventSource, Specialized]]) -> str:
    """Why no branch of a rule can match on any of the sources its log source names, in one line: the source
    itself when there is one, else the fields absent and the constants that decided it, across them."""
    absent = dict.fromkeys(f for _, s in tried for f in s.absent)
    fixed = dict.fromkeys(f for _, s in tried for f in s.fixed)
    parts = [f"absent there: {', '.join(absent)}"] if absent else []
    if fixed:
        parts.append(f"fixed there: {', '.join(fixed)}")
    where = tried[0][0].name if len(tried) == 1 else f"any of its {len(tried)} sources"
    return f"no branch can match on {where} ({'; '.join(parts) or 'the condition never holds'})"


def specialize(tree: Node, source: EventSource) -> Specialized:
    """`tree` (Sigma field names) for `source`: each test on an absent field replaced by what it is on an event
    without that field, each test on a constant by its answer, the result simplified and renamed."""
    absent: dict[str, None] = {}
    fixed: dict[str, None] = {}

    def fold(node: Node) -> Node:
        if isinstance(node, Atom):
            if node.field is None:
                return node  # a keyword searches whatever values the event has
            if node.field in source.constants:
                value = source.constants[node.field]
                fixed[f"{node.field}={value}"] = None
                return TRUE if constant_holds(node, value) else FALSE
            names = (node.field, node.values[0]) if node.op is Op.FIELDREF else (node.field,)
            missing = [f for f in names if not source.carries(f) or f in source.constants]
            if missing:
                absent.update(dict.fromkeys(missing))
                return TRUE if node.op in _HOLD_WHEN_ABSENT else FALSE
            return node
        if isinstance(node, Not):
            return Not(fold(node.child))
        if isinstance(node, And):
            return And(tuple(fold(c) for c in node.children))
        assert isinstance(node, Or)
        return Or(tuple(fold(c) for c in node.children))

    folded = simplify(fold(tree))
    if folded in (TRUE, FALSE):
        return Specialized(folded, tuple(sorted(absent)), tuple(sorted(fixed)))
    derived = []
    for f in sorted(fields_of(folded)):
        found = source.derived_from(f)
        if found is not None:
            derived.append((f, *found))
    return Specialized(rename_fields(folded, dict(source.fields)), tuple(sorted(absent)), tuple(sorted(fixed)),
                       tuple(derived))
