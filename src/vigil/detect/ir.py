"""The matcher's intermediate form: pySigma's parsed condition tree lowered to and/or/not over atoms."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaType,
    SpecialChars,
)


class UnsupportedFeature(Exception):
    """Valid Sigma that this engine cannot evaluate; the loader reports it against the rule."""


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


# Ops whose alternatives can be merged into one atom when OR-linked on the same field.
_MERGEABLE = frozenset({Op.EQ, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.GLOB, Op.CIDR})


@dataclass(frozen=True)
class Atom:
    """One test on one field (None: any field, a keyword search) with OR-linked alternatives."""

    field: str | None
    op: Op
    values: tuple[str, ...]
    cased: bool = False  # compare the original value instead of the lower-cased one
    flags: int = 0  # re flags for REGEX
    arg: str = ""  # CMP: the operator; FIELDREF: eq/startswith/endswith/contains


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

_CMP_OPS = {
    CompareOperators.LT: "<",
    CompareOperators.LTE: "<=",
    CompareOperators.GT: ">",
    CompareOperators.GTE: ">=",
    CompareOperators.NEQ: "!=",
}
_RE_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
    SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
    SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
}


def lower_condition(tree: object) -> Node:
    """Turn a postprocessed pySigma condition into a simplified IR tree."""
    return simplify(_lower(tree))


def _lower(node: object) -> Node:
    if isinstance(node, ConditionAND):
        return And(tuple(_lower(a) for a in node.args))
    if isinstance(node, ConditionOR):
        return Or(tuple(_lower(a) for a in node.args))
    if isinstance(node, ConditionNOT):
        return Not(_lower(node.args[0]))
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _value_node(node.field, node.value)
    if isinstance(node, ConditionValueExpression):
        return _value_node(None, node.value)
    if isinstance(node, ConditionItem):  # pragma: no cover - all ConditionItem kinds are handled above
        raise UnsupportedFeature(f"condition element {type(node).__name__}")
    raise UnsupportedFeature(f"condition element {type(node).__name__}")


def _value_node(field: str | None, value: SigmaType) -> Node:
    if isinstance(value, SigmaExpansion):
        return Or(tuple(_value_node(field, v) for v in value.values))
    if isinstance(value, SigmaString):
        return string_atom(field, value, cased=isinstance(value, SigmaCasedString))
    if isinstance(value, SigmaBool):
        return Atom(field, Op.EQ, ("true" if value.boolean else "false",)) if field else Atom(
            None, Op.CONTAINS, ("true" if value.boolean else "false",))
    if isinstance(value, SigmaNumber):
        text = str(value.number)
        return Atom(field, Op.EQ, (text,)) if field else Atom(None, Op.CONTAINS, (text,))
    if isinstance(value, SigmaNull):
        if field is None:
            raise UnsupportedFeature("null value without a field")
        return Atom(field, Op.NULL, ())
    if isinstance(value, SigmaExists):
        if field is None:
            raise UnsupportedFeature("exists without a field")
        return Atom(field, Op.EXISTS if value.exists else Op.NOT_EXISTS, ())
    if isinstance(value, SigmaRegularExpression):
        flags = 0
        for flag in value.flags:
            flags |= _RE_FLAGS[flag]
        return Atom(field, Op.REGEX, (str(value.regexp),), cased=True, flags=flags)
    if isinstance(value, SigmaCIDRExpression):
        return Atom(field, Op.CIDR, (str(value.network),), cased=True)
    if isinstance(value, SigmaCompareExpression):
        return Atom(field, Op.CMP, (str(value.number.number),), cased=True, arg=_CMP_OPS[value.op])
    if isinstance(value, SigmaFieldReference):
        if field is None:
            raise UnsupportedFeature("fieldref without a field")
        mode = {(False, False): "eq", (True, False): "startswith", (False, True): "endswith",
                (True, True): "contains"}[(value.starts_with, value.ends_with)]
        return Atom(field, Op.FIELDREF, (value.field,), arg=mode)
    raise UnsupportedFeature(f"value type {type(value).__name__} (modifier not supported by this engine)")


def string_atom(field: str | None, value: SigmaString, *, cased: bool = False) -> Atom:
    """Classify a Sigma string with wildcards into the cheapest equivalent string test."""
    parts: list[str | SpecialChars] = []
    for part in value.s:
        if isinstance(part, Placeholder):
            raise UnsupportedFeature(f"placeholder %{part.name}% (|expand) has no value in Vigil")
        if part is SpecialChars.WILDCARD_MULTI and parts and parts[-1] is SpecialChars.WILDCARD_MULTI:
            continue  # '**' is the same as '*'
        parts.append(part if cased or not isinstance(part, str) else part.lower())
    if field is None:  # keywords search inside values, as Sigma's full-text search does
        if not parts or parts[0] is not SpecialChars.WILDCARD_MULTI:
            parts.insert(0, SpecialChars.WILDCARD_MULTI)
        if parts[-1] is not SpecialChars.WILDCARD_MULTI:
            parts.append(SpecialChars.WILDCARD_MULTI)
    multi = SpecialChars.WILDCARD_MULTI
    if not parts:
        return Atom(field, Op.EQ, ("",), cased)
    if all(isinstance(p, str) for p in parts):
        return Atom(field, Op.EQ, ("".join(p for p in parts if isinstance(p, str)),), cased)
    if parts == [multi]:
        return Atom(field, Op.ANY, (), cased)
    if len(parts) == 3 and parts[0] is multi and parts[2] is multi and isinstance(parts[1], str):
        return Atom(field, Op.CONTAINS, (parts[1],), cased)
    if len(parts) == 2 and isinstance(parts[0], str) and parts[1] is multi:
        return Atom(field, Op.STARTSWITH, (parts[0],), cased)
    if len(parts) == 2 and parts[0] is multi and isinstance(parts[1], str):
        return Atom(field, Op.ENDSWITH, (parts[1],), cased)
    pattern = "".join(
        re.escape(p) if isinstance(p, str) else (".*" if p is multi else ".") for p in parts
    )
    return Atom(field, Op.GLOB, (pattern,), cased)


def simplify(node: Node) -> Node:
    """Flatten nested and/or, merge OR-linked alternatives on one field, drop double negation."""
    if isinstance(node, Atom):
        return node
    if isinstance(node, Not):
        child = simplify(node.child)
        return child.child if isinstance(child, Not) else Not(child)
    kind = type(node)
    flat: list[Node] = []
    for child in node.children:
        c = simplify(child)
        if isinstance(c, kind):
            flat.extend(c.children)
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
    merged: dict[tuple[str | None, Op, bool], Atom] = {}
    out: list[Node] = []
    for n in nodes:
        if isinstance(n, Atom) and n.op in _MERGEABLE:
            key = (n.field, n.op, n.cased)
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
    Op.FIELDREF: 5, Op.GLOB: 6, Op.REGEX: 7,
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
