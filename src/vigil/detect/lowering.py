"""Lowering: pySigma's postprocessed condition tree and typed values into the matcher's IR."""

from __future__ import annotations

import re

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

from vigil.detect.ir import And, Atom, Node, Not, Op, Or, UnsupportedFeature, simplify

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

