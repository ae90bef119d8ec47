"""The compiler's modules import each other without a cycle, and both load paths assemble rules the same way."""

from __future__ import annotations

import grimp
import pytest

from tests.unit.detect.support import rule_yaml
from vigil.detect import ErrorKind, load_rules_text


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among `edges` (module -> modules it imports), if there is any."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target, path)) is not None:
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module, [])) is not None:
            return found
    return None


@pytest.fixture(scope="module")
def detect_imports() -> dict[str, set[str]]:
    graph = grimp.build_graph("vigil")
    modules = {m for m in graph.modules if m.startswith("vigil.detect.")}
    return {m: {t for t in graph.find_modules_directly_imported_by(m) if t in modules} for m in modules}


def test_the_detect_modules_import_each_other_without_a_cycle(detect_imports: dict[str, set[str]]) -> None:
    # The layers contract in pyproject.toml orders the layers; modules within one layer may import each other,
    # so this closes the gap: no cycle at all, the eight-module one of old included.
    assert _cycle(detect_imports) is None
    assert "vigil.detect.ruleset" not in detect_imports["vigil.detect.model"]
    assert "vigil.detect.ruleset" not in detect_imports["vigil.detect.cache"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_text_loads_refuse_a_repeated_rule_id_as_file_loads_do() -> None:
    rid = "11111111-2222-4333-8444-555555555555"
    text = (rule_yaml("s:\n  User: a\ncondition: s", rule_id=rid, title="First") + "---\n"
            + rule_yaml("s:\n  User: b\ncondition: s", rule_id=rid, title="Second"))
    report = load_rules_text(text)
    assert [r.title for r in report.ruleset.rules] == ["First"]
    [err] = report.errors
    assert (err.kind, err.rule_id, err.title) == (ErrorKind.DUPLICATE, rid, "Second")
