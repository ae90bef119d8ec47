"""Compilation: each rule bound to the event sources where a branch can match, then one generated module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import CodeType

from vigil.detect.binding import Specialized, specialize, why_unbound
from vigil.detect.codegen import CompiledBinding, generate_module
from vigil.detect.mappings import EventSource, SourceMapping
from vigil.detect.model import AbsentFields, LoadedRule, RuleNote


@dataclass(frozen=True)
class CompiledCode:
    """The generated module's chunks compiled (what `RuleSet` runs and the cache keeps), with what binding
    found: the rules with no event source, and per rule and source the fields absent there."""

    code: tuple[CodeType, ...]
    notes: tuple[RuleNote, ...]
    absent: tuple[AbsentFields, ...]


def compile_rules(rules: Sequence[LoadedRule], mappings: Sequence[SourceMapping]) -> CompiledCode:
    bindings: list[CompiledBinding] = []
    notes: list[RuleNote] = []
    absent: list[AbsentFields] = []
    for index, rule in enumerate(rules):
        reasons: list[str] = []
        bound = False
        product = rule.info.logsource.product
        for mapping in mappings:
            sources, reason = mapping.sources(rule.info.logsource)
            unbound: list[tuple[EventSource, Specialized]] = []
            for source in sources:
                special = specialize(rule.tree, source)
                if special.absent:
                    absent.append(AbsentFields(rule.info.path, rule.info.id, source.name, special.absent,
                                               special.bound))
                if not special.bound:
                    unbound.append((source, special))
                    continue
                bindings.extend(CompiledBinding(index, mapping.domain, key, special.tree, special.derived)
                                for key in source.keys)
                bound = True
            if unbound:
                reasons.append(why_unbound(unbound))
            if reason and (not product or product.lower() == mapping.product):
                reasons.append(reason)
        if not bound:
            why = "; ".join(reasons) or f"no mapping for product {rule.info.logsource.product!r}"
            notes.append(RuleNote(rule.info.path, rule.info.id, f"no event source: {why}"))
    # The source (megabytes for SigmaHQ's rules) is dropped once compiled; the cache keeps the code.
    code = tuple(compile(chunk, "<vigil-rules>", "exec") for chunk in generate_module(bindings))
    return CompiledCode(code, tuple(notes), tuple(absent))
