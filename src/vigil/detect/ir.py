"""The matcher's intermediate form: and/or/not over atoms, simplified and ordered cheapest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum


class RuleContentError(Exception):
    """A rule that Vigil cannot run as written: the loader reports it against the rule, with its location. Only
    these (and pySigma's own errors) become a rule's error: anything else raised while lowering is a bug."""


class UnsupportedFeature(RuleContentError):
    """Valid Sigma that this engine cannot evaluate."""


class InvalidRuleValue(RuleContentError):
    """A value that no event can hold where the rule tests it (an hour of 24, a month of 13, ...)."""


class Op(StrEnum):
    EQ = "eq"
    CONTAINS = "contains"
    STARTSWITH = "startswith"
    ENDSWITH = "endswith"
    GLOB = "glob"  # wildcards inside the value: a full-match regex
    REGEX = "re"  # Sigma's |re: an unanchored search on the original value
    ANY = "any"  # `field: '*'`: any value at all
    NULL = "null"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    CIDR = "cidr"
    CMP = "cmp"
    FIELDREF = "fieldref"
    TIMEPART = "timepart"  # |minute, |hour...: a part of the value read as a timestamp equals one of the values


# Ops whose alternatives can be merged into one atom when OR-linked on the same field.
_MERGEABLE = frozenset({Op.EQ, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.GLOB, Op.CIDR, Op.TIMEPART})


@dataclass(frozen=True)
class Atom:
    """One test on one field (None: any field, a keyword search) with OR-linked alternatives."""

    field: str | None
    op: Op
    values: tuple[str, ...]
    cased: bool = False  # compare the original value instead of the lower-cased one
    flags: int = 0  # re flags for REGEX
    arg: str = ""  # CMP: the operator; FIELDREF: eq/startswith/endswith/contains; TIMEPART: the part


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node = Atom | And | Or | Not

# The constants a source's absent fields fold a tree to: an empty `and` holds, an empty `or` never does (as in
# the generated code, the C evaluator and the tree walker).
TRUE = And(())
FALSE = Or(())


def simplify(node: Node) -> Node:
    """Flatten nested and/or, merge OR-linked alternatives on one field, drop double negation, and fold the
    constants TRUE and FALSE away (or to the whole tree)."""
    if isinstance(node, Atom):
        return node
    if isinstance(node, Not):
        child = simplify(node.child)
        if child == TRUE:
            return FALSE
        if child == FALSE:
            return TRUE
        return child.child if isinstance(child, Not) else Not(child)
    kind = type(node)
    absorbing = FALSE if kind is And else TRUE  # one false operand makes an `and` false, one true an `or` true
    flat: list[Node] = []
    for child in node.children:
        c = simplify(child)
        if c == absorbing:
            return absorbing
        if isinstance(c, kind):
            flat.extend(c.children)  # the neutral constant (an empty node of the same kind) adds nothing
        else:
            flat.append(c)
    if kind is Or:
        flat = _merge_alternatives(flat)
    else:
        flat.sort(key=cost)  # cheap, selective tests first: `and` short-circuits
    if len(flat) == 1:
        return flat[0]
    return kind(tuple(flat))


def _merge_alternatives(nodes: Sequence[Node]) -> list[Node]:
    merged: dict[tuple[str | None, Op, bool, str], Atom] = {}
    out: list[Node] = []
    for n in nodes:
        if isinstance(n, Atom) and n.op in _MERGEABLE:
            key = (n.field, n.op, n.cased, n.arg)
            prev = merged.get(key)
            if prev is None:
                merged[key] = n
                out.append(n)
            else:
                values = prev.values + tuple(v for v in n.values if v not in prev.values)
                new = replace(prev, values=values)
                out[out.index(prev)] = new
                merged[key] = new
        else:
            out.append(n)
    return out


_OP_COST = {
    Op.EQ: 1, Op.EXISTS: 1, Op.NOT_EXISTS: 1, Op.NULL: 1, Op.ANY: 1,
    Op.STARTSWITH: 2, Op.ENDSWITH: 2, Op.CONTAINS: 3, Op.CMP: 4, Op.CIDR: 5,
    Op.FIELDREF: 5, Op.TIMEPART: 6, Op.GLOB: 6, Op.REGEX: 7,
}


def cost(node: Node) -> int:
    """A rough evaluation cost, used to order the operands of `and`."""
    if isinstance(node, Atom):
        c = _OP_COST[node.op] + (len(node.values) // 8)
        return c * 20 if node.field is None else c  # keyword atoms scan every value
    if isinstance(node, Not):
        return cost(node.child) + 2
    return sum(cost(c) for c in node.children) + 1


def fields_of(node: Node) -> set[str]:
    """The event fields a tree reads (fieldref targets included)."""
    if isinstance(node, Atom):
        out = {node.field} if node.field else set()
        if node.op is Op.FIELDREF:
            out.add(node.values[0])
        return out
    if isinstance(node, Not):
        return fields_of(node.child)
    out = set()
    for c in node.children:
        out |= fields_of(c)
    return out


def rename_fields(node: Node, mapping: dict[str, str]) -> Node:
    """Map Sigma field names to a source's field names (fields absent from the mapping stay)."""
    if isinstance(node, Atom):
        field = mapping.get(node.field, node.field) if node.field else None
        values = node.values
        if node.op is Op.FIELDREF:
            values = (mapping.get(values[0], values[0]),)
        return replace(node, field=field, values=values)
    if isinstance(node, Not):
        return Not(rename_fields(node.child, mapping))
    return type(node)(tuple(rename_fields(c, mapping) for c in node.children))
