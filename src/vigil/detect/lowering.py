"""Lowering: pySigma's postprocessed condition tree and typed values into the matcher's IR."""

from __future__ import annotations

import re
from collections.abc import Iterator

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
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
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
    TimestampPart,
)

from vigil.detect.ir import And, Atom, InvalidRuleValue, Node, Not, Op, Or, UnsupportedFeature, simplify
from vigil.detect.placeholders import Placeholders, UnresolvedPlaceholder
from vigil.detect.timeparts import PART_RANGES

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


_TIME_PARTS = {p: p.name.lower() for p in TimestampPart}


def lower_condition(tree: object, placeholders: Placeholders | None = None) -> Node:
    """Turn a postprocessed pySigma condition into a simplified IR tree; `|expand` placeholders take their
    values from `placeholders` (a missing one raises UnresolvedPlaceholder)."""
    return simplify(_Lowering(placeholders or {}).lower(tree))


class _Lowering:
    def __init__(self, placeholders: Placeholders) -> None:
        self.placeholders = placeholders

    def lower(self, node: object) -> Node:
        if isinstance(node, ConditionAND):
            return And(tuple(self.lower(a) for a in node.args))
        if isinstance(node, ConditionOR):
            return Or(tuple(self.lower(a) for a in node.args))
        if isinstance(node, ConditionNOT):
            return Not(self.lower(node.args[0]))
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self.value(node.field, node.value)
        if isinstance(node, ConditionValueExpression):
            return self.value(None, node.value)
        raise UnsupportedFeature(f"condition element {type(node).__name__}")

    def value(self, field: str | None, value: SigmaType) -> Node:
        if isinstance(value, SigmaExpansion):
            return Or(tuple(self.value(field, v) for v in value.values))
        if isinstance(value, SigmaString | SigmaRegularExpression) and value.contains_placeholder():
            # Sigma's |expand: one alternative per value (per combination when several placeholders)
            cased = isinstance(value, SigmaCasedString)  # the expanded strings are plain SigmaStrings
            alternatives: list[Node] = []
            for v in value.replace_placeholders(self._values):
                if isinstance(v, SigmaString):
                    alternatives.append(string_atom(field, v, cased=cased))
                else:
                    alternatives.append(_value_node(field, v))
            return Or(tuple(alternatives))
        return _value_node(field, value)

    def _values(self, placeholder: Placeholder) -> Iterator[SigmaString]:
        values = self.placeholders.get(placeholder.name)
        if values is None:
            raise UnresolvedPlaceholder(placeholder.name)
        # As pySigma's value-list placeholders: each value is a Sigma string (`*` and `?` are wildcards).
        return (SigmaString(v) for v in values)


def _value_node(field: str | None, value: SigmaType) -> Node:
    if isinstance(value, SigmaExpansion):
        return Or(tuple(_value_node(field, v) for v in value.values))
    if isinstance(value, SigmaTimestampPart):  # a SigmaNumber: tested first
        return _timestamp_part(field, value)
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


def _timestamp_part(field: str | None, value: SigmaTimestampPart) -> Atom:
    part = _TIME_PARTS[value.timestamp_part]
    if field is None:
        raise UnsupportedFeature(f"|{part} without a field")
    number = int(value.number)
    bounds = PART_RANGES[part]
    if bounds is not None and not bounds[0] <= number <= bounds[1]:
        raise InvalidRuleValue(f"|{part} value {number} is outside {bounds[0]}..{bounds[1]}")
    return Atom(field, Op.TIMEPART, (str(number),), cased=True, arg=part)


def string_atom(field: str | None, value: SigmaString, *, cased: bool = False) -> Atom:
    """Classify a Sigma string with wildcards into the cheapest equivalent string test."""
    parts: list[str | SpecialChars] = []
    for part in value.s:
        if isinstance(part, Placeholder):  # pragma: no cover - placeholders are replaced before this
            raise UnresolvedPlaceholder(part.name)
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

