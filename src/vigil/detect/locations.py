"""Where in a rule file a problem is: YAML documents kept with their nodes, an error pointed at what it names."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from vigil.detect.model import Position


@dataclass(frozen=True)
class Document:
    """One YAML document of a rule file: its data and the node tree it was built from (which has the marks)."""

    data: Any
    node: yaml.Node

    @property
    def start(self) -> Position:
        return _position(self.node)


def read_documents(text: str) -> list[Document]:
    """The non-empty YAML documents of `text`; raises yaml.YAMLError (with `problem_mark`) on invalid YAML."""
    # The C loader is several times faster than pySigma's default pure-Python one on thousands of rules. Composing
    # and constructing apart is what `load_all` does inside: keeping the node costs nothing more.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            if data is not None:
                documents.append(Document(data, node))  # type: ignore[arg-type]  # check_node: not None
        return documents
    finally:
        loader.dispose()


def yaml_error_position(error: yaml.YAMLError) -> Position | None:
    """Where the parser found the problem."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return (mark.line + 1, mark.column + 1) if mark is not None else None


def yaml_error_reason(error: yaml.YAMLError) -> str:
    """The problem, and where what it belongs to starts (an unclosed bracket: where it opens)."""
    problem, context = getattr(error, "problem", None), getattr(error, "context", None)
    if not problem:
        return str(error)
    mark = getattr(error, "context_mark", None)
    if context and mark is not None:
        return f"{problem} ({context} at line {mark.line + 1}, column {mark.column + 1})"
    return f"{problem} ({context})" if context else str(problem)


# The rule key each error names, by error class (the first match along its MRO): pySigma's errors, and Vigil's own
# from lowering. A section that the document lacks falls back to the next one that it has.
_SECTIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "SigmaIdentifierError": (("id",),),
    "SigmaTitleError": (("title",),),
    "SigmaNameError": (("name",),),
    "SigmaLevelError": (("level",),),
    "SigmaStatusError": (("status",),),
    "SigmaDateError": (("date",),),
    "SigmaModifiedError": (("modified",),),
    "SigmaDescriptionError": (("description",),),
    "SigmaReferencesError": (("references",),),
    "SigmaFieldsError": (("fields",),),
    "SigmaFalsePositivesError": (("falsepositives",),),
    "SigmaAuthorError": (("author",),),
    "SigmaLicenseError": (("license",),),
    "SigmaTaxonomyError": (("taxonomy",),),
    "SigmaScopeError": (("scope",),),
    "SigmaRelatedError": (("related",),),
    "SigmaTagError": (("tags",),),
    "SigmaLogsourceError": (("logsource",),),
    "SigmaConditionError": (("detection", "condition"), ("filter", "condition")),
    "SigmaTimespanError": (("correlation", "timespan"), ("correlation",)),
    "SigmaCorrelationTypeError": (("correlation", "type"), ("correlation",)),
    "SigmaCorrelationConditionError": (("correlation", "condition"), ("correlation",)),
    "SigmaRuleNotFoundError": (("correlation", "rules"), ("correlation",)),
    "SigmaCorrelationRuleError": (("correlation",),),
    "SigmaFilterConditionError": (("filter", "condition"),),
    "SigmaFilterRuleReferenceError": (("filter", "rules"),),
    "SigmaFilterError": (("filter",),),
}
# pySigma raises its generic SigmaValueError and SigmaTypeError for some metadata too: the key its message names.
_WORDS = (("tag", ("tags",)), ("level", ("level",)), ("status", ("status",)), ("logsource", ("logsource",)),
          ("related", ("related",)), ("modified", ("modified",)), ("date", ("date",)), ("author", ("author",)),
          ("falsepositive", ("falsepositives",)), ("reference", ("references",)), ("license", ("license",)),
          ("taxonomy", ("taxonomy",)), ("scope", ("scope",)))
_DETECTION = (("detection",), ("filter",), ("correlation",))  # anything else: values, modifiers, lowering
_TOKENS = re.compile(r"'([^']+)'|\"([^\"]+)\"|(%[^%\s]+%)|\|(\w+)")


def locate(document: Document, error: BaseException, message: str | None = None) -> Position:
    """Where in `document` the key or value that `error` (with `message`, by default its text) names is; the
    document's start when it names none."""
    text = str(error) if message is None else message
    sections = next((_SECTIONS[c.__name__] for c in type(error).__mro__ if c.__name__ in _SECTIONS), None)
    if sections is None:
        lowered = text.lower()
        sections = (*(keys for word, keys in _WORDS if re.search(rf"\b{word}s?\b", lowered)), *_DETECTION)
    for keys in sections:
        found = _path(document.node, keys)
        if found is None:
            continue
        key, value = found
        if keys[0] in ("detection", "filter", "correlation"):
            mentioned = _mentioned(value, _tokens(text))
            if mentioned is not None:
                return mentioned
        return _position(key)
    return document.start


def key_position(document: Document, *keys: str) -> Position:
    """Where the key at path `keys` is (the document's start if it has none)."""
    found = _path(document.node, keys)
    return _position(found[0]) if found is not None else document.start


def mention_position(document: Document, text: str) -> Position:
    """Where the first key or value written `text` is (the document's start if there is none)."""
    return _mentioned(document.node, [text]) or document.start


def _position(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _path(node: yaml.Node, keys: tuple[str, ...]) -> tuple[yaml.Node, yaml.Node] | None:
    """The key node and value node at `keys` under mapping `node`."""
    found = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        if found is None:
            return None
        node = found[1]
    return found


def _tokens(message: str) -> list[str]:
    """What a message quotes: names, values, %placeholders% and |modifiers."""
    return [next(g for g in m.groups() if g) for m in _TOKENS.finditer(message)]


def _mentioned(node: yaml.Node, tokens: list[str]) -> Position | None:
    """The first key (field or modifier) or value under `node` that the first of `tokens` naming one names (in
    the message's order: the first thing it quotes is what it is about)."""
    for token in tokens:
        for kind, scalar in _scalars(node):
            text = scalar.value
            if kind == "key" and (token in text.split("|") or token == text):
                return _position(scalar)
            if kind == "value" and (token == text or (token.startswith("%") and token in text)):
                return _position(scalar)
    return None


def _scalars(node: yaml.Node) -> Iterator[tuple[str, yaml.ScalarNode]]:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                yield "key", k
            yield from _scalars(v)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _scalars(item)
    elif isinstance(node, yaml.ScalarNode):
        yield "value", node
