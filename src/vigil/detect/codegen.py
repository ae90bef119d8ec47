"""Compile IR trees into one Python module: a function per rule binding, and each index bucket's prefilter plan."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from types import CodeType
from typing import Any

from vigil.detect.events import Scalar
from vigil.detect.ir import And, Atom, Node, Not, Op
from vigil.detect.prefilter import BucketPlan, plan_bucket
from vigil.detect.runtime import NAMESPACE, AtomTest, Tree

# A generated binding test: (lower-cased event, original event) -> matched
Matcher = Callable[[Mapping[str, Scalar], Mapping[str, Scalar]], bool]
IndexKey = tuple[str, str]  # (channel or table, event id or action type), lower-cased source
Derived = tuple[tuple[str, str, str], ...]  # (field, derivation, column) a source computes per event


@dataclass(frozen=True)
class MatcherTables:
    """What the generated module defines: the one contract between codegen and the rule set."""

    atoms: list[AtomTest]  # per atom, its Python test
    specs: list[tuple[Any, ...]]  # per atom, the same test for the C evaluator (`_Emitter.spec`)
    trees: list[Tree]  # per binding, its tree over atom indexes
    rule_of: list[int]  # per binding, its rule's index
    functions: list[Matcher]  # per binding, its generated function
    buckets: list[tuple[tuple[int, ...], BucketPlan]]  # per bucket, its member bindings and prefilter plan
    windows: dict[IndexKey, int]  # Windows index key -> bucket
    telemetry: dict[IndexKey, int]  # telemetry index key -> bucket
    derived: dict[IndexKey, Derived]  # telemetry index key -> fields computed per event


# Each table's name in the generated module: written by `generate_module`, read back only by `run_module`.
_NAMES = {"atoms": "A", "specs": "S", "trees": "T", "rule_of": "R", "functions": "F", "buckets": "B",
          "windows": "WIN", "telemetry": "TEL", "derived": "DER"}
assert set(_NAMES) == {f.name for f in fields(MatcherTables)}


def run_module(code: Iterable[CodeType]) -> MatcherTables:
    """Run the generated module's compiled chunks in order, in one namespace, and take its tables."""
    ns: dict[str, Any] = dict(NAMESPACE)
    for chunk in code:
        exec(chunk, ns)  # noqa: S102 - our own generated code
    missing = [name for name in _NAMES.values() if name not in ns]
    if missing:
        raise ValueError(f"not a generated rule module: it defines no {', '.join(missing)}")
    return MatcherTables(**{f: ns[name] for f, name in _NAMES.items()})

# Past this many alternatives, `a in v or b in v ...` loses to one automaton pass.
_MAX_INLINE_CONTAINS = 10


@dataclass(frozen=True)
class CompiledBinding:
    """A rule bound to one index key, its tree already in the source's field names."""

    rule_index: int
    domain: str
    key: tuple[str, str]
    tree: Node
    derived: tuple[tuple[str, str, str], ...] = ()  # (field, derivation, column) the source computes per event


class _Emitter:
    def __init__(self) -> None:
        self.consts: dict[str, str] = {}  # source -> name
        self.imports: dict[str, None] = {}  # helpers only some rules need, imported only when used

    def const(self, source: str) -> str:
        name = self.consts.get(source)
        if name is None:
            name = f"_k{len(self.consts)}"
            self.consts[source] = name
        return name

    def atom(self, a: Atom, v: str, o: str, low: str) -> str:
        """The test of atom `a` on one value: `v` lower-cased, `o` original (None when absent)."""
        s = o if a.cased else v
        vals = a.values
        op = a.op
        if op is Op.EQ:
            if len(vals) == 1:
                return f"{s} == {vals[0]!r}"
            return f"{s} in {self.const(f'frozenset({tuple(sorted(vals))!r})')}"
        if op is Op.CONTAINS:
            if len(vals) <= _MAX_INLINE_CONTAINS:
                inner = " or ".join(f"{x!r} in {s}" for x in vals)
            else:
                inner = f"{self.const(f'_anyin({tuple(sorted(vals))!r})')}({s})"
            return f"({s} is not None and ({inner}))"
        if op is Op.STARTSWITH:
            return f"({s} is not None and {s}.startswith({tuple(vals)!r}))"
        if op is Op.ENDSWITH:
            return f"({s} is not None and {s}.endswith({tuple(vals)!r}))"
        if op is Op.GLOB:
            pat = "|".join(f"(?:{x})" for x in vals)
            return f"({s} is not None and {self.const(f're.compile({pat!r}, re.S).fullmatch')}({s}) is not None)"
        if op is Op.REGEX:
            fn = self.const(f"_research({vals[0]!r}, {a.flags})")
            return f"({o} is not None and {fn}({o}))"
        if op is Op.ANY or op is Op.EXISTS:
            return f"{o} is not None"
        if op is Op.NOT_EXISTS:
            return f"{o} is None"
        if op is Op.NULL:
            return f"({o} is None or {o} == '')"
        if op is Op.CIDR:
            nets = ", ".join(f"ipaddress.ip_network({x!r})" for x in vals)
            return f"{self.const(f'_cidr(({nets},))')}({o})"
        if op is Op.CMP:
            return f"_cmp({o}, {a.arg!r}, {float(vals[0])!r})"
        if op is Op.FIELDREF:
            return f"_fref({v}, {low}.get({vals[0]!r}), {a.arg!r})"
        if op is Op.TIMEPART:
            self.imports["from vigil.detect.timeparts import timestamp_part as _tpart"] = None
            numbers = sorted(int(x) for x in vals)
            if len(numbers) == 1:
                return f"_tpart({o}, {a.arg!r}) == {numbers[0]!r}"
            return f"_tpart({o}, {a.arg!r}) in {self.const(f'frozenset({tuple(numbers)!r})')}"
        raise AssertionError(f"unhandled op {op}")  # pragma: no cover - every Op is handled above

    def spec(self, a: Atom) -> str:
        """The atom for the C evaluator (`_speedups.run`): (opcode, cased, payload). Opcodes: 1 equals one of a
        frozenset, 2 contains one of a tuple (or of a `_speedups.Literals`, for many), 3 starts with, 4 ends with
        one of a tuple, 5 present, 6 absent, 7 absent or empty, 8 the payload (a callable) holds for the value
        (the original one when cased); 0 calls the atom's Python test, its payload saying whether the test reads
        the whole lower-cased view (keywords, field references), which the C evaluator then fills first."""
        op, vals = a.op, a.values
        if a.field is None:
            return "(0, False, True)"
        if op is Op.EQ:
            return f"(1, {a.cased}, {self.const(f'frozenset({tuple(sorted(vals))!r})')})"
        if op is Op.CONTAINS:
            if len(vals) <= _MAX_INLINE_CONTAINS:
                return f"(2, {a.cased}, {tuple(vals)!r})"
            return f"(2, {a.cased}, {self.const(f'_lits({tuple(sorted(vals))!r}, {a.cased})')})"
        if op is Op.STARTSWITH or op is Op.ENDSWITH:
            return f"({3 if op is Op.STARTSWITH else 4}, {a.cased}, {tuple(vals)!r})"
        # A regex search (on the original value) or glob match, called by the C evaluator: no frame for the atom.
        if op is Op.REGEX:
            return f"(8, True, {self.const(f'_research({vals[0]!r}, {a.flags})')})"
        if op is Op.GLOB:
            pat = "|".join(f"(?:{x})" for x in vals)
            return f"(8, {a.cased}, {self.const(f're.compile({pat!r}, re.S).fullmatch')})"
        code = {Op.ANY: 5, Op.EXISTS: 5, Op.NOT_EXISTS: 6, Op.NULL: 7}.get(op, 0)
        return f"({code}, False, {op is Op.FIELDREF})"

    def keyword(self, a: Atom, low: str, orig: str) -> str:
        source = orig if a.cased else low
        return f"any({self.atom(a, 'x', 'x', low)} for x in _vals({source}))"


def constant_holds(atom: Atom, value: str) -> bool:
    """Whether `atom` holds on a field whose value is `value` in every event of a source: the very test the
    generated code runs, evaluated once at compile time."""
    em = _Emitter()
    body = em.atom(atom, "v", "o", "L")
    ns: dict[str, Any] = dict(NAMESPACE)
    for line in ("import re", *em.imports):
        exec(line, ns)  # noqa: S102 - our own generated code
    for source, name in em.consts.items():
        ns[name] = eval(source, ns)  # noqa: S307 - as above
    return bool(eval(body, ns, {"v": value.lower(), "o": value, "L": {}}))  # noqa: S307 - as above


def _tree_tuple(node: Node, atoms: list[str], specs: list[str], em: _Emitter) -> str:
    if isinstance(node, Atom):
        body = em.keyword(node, "L", "O") if node.field is None else em.atom(node, "v", "o", "L")
        atoms.append(f"lambda v, o, L, O: {body}")
        specs.append(em.spec(node))
        return f"('a', {len(atoms) - 1}, {node.field!r})"
    if isinstance(node, Not):
        return f"('!', {_tree_tuple(node.child, atoms, specs, em)})"
    kind = "&" if isinstance(node, And) else "|"
    return f"({kind!r}, ({''.join(_tree_tuple(c, atoms, specs, em) + ', ' for c in node.children)}))"


class _Function:
    """Field variables of one binding's function: `l<n>` lower-cased, `o<n>` original."""

    def __init__(self, em: _Emitter) -> None:
        self.em = em
        self.fields: dict[str, int] = {}
        self.orig_used: set[int] = set()

    def var(self, field: str, original: bool) -> str:
        i = self.fields.setdefault(field, len(self.fields))
        if original:
            self.orig_used.add(i)
            return f"o{i}"
        return f"l{i}"

    def expr(self, node: Node) -> str:
        if isinstance(node, Atom):
            if node.field is None:
                return self.em.keyword(node, "L", "O")
            needs_orig = node.cased or node.op in (
                Op.REGEX, Op.ANY, Op.EXISTS, Op.NOT_EXISTS, Op.NULL, Op.CIDR, Op.CMP, Op.TIMEPART)
            v = self.var(node.field, False)
            o = self.var(node.field, True) if needs_orig else "None"
            return self.em.atom(node, v, o, "L")
        if isinstance(node, Not):
            return f"(not {self.expr(node.child)})"
        if not node.children:  # TRUE or FALSE: a rule whose other tests a source's absent fields folded away
            return "True" if isinstance(node, And) else "False"
        joiner = " and " if isinstance(node, And) else " or "
        return "(" + joiner.join(self.expr(c) for c in node.children) + ")"

    def define(self, name: str, node: Node) -> str:
        body = self.expr(node)
        head = []
        for field, i in self.fields.items():
            head.append(f"    l{i} = L.get({field!r})")
            if i in self.orig_used:
                head.append(f"    o{i} = O.get({field!r})")
        return "\n".join([f"def {name}(L, O):", *head, f"    return {body}"])


# Statements per chunk, and source characters: compiling the whole module at once (megabytes for SigmaHQ's
# rules) peaks at hundreds of MiB of syntax tree; chunks compiled one after another keep that to a few tens. A
# bucket's plan alone can be a hundred KiB of literals, hence the size bound too.
_CHUNK = 400
_CHUNK_CHARS = 64 * 1024


def _runs(items: Sequence[str]) -> list[list[str]]:
    """`items` in order, in runs of at most _CHUNK items and about _CHUNK_CHARS characters."""
    runs: list[list[str]] = []
    size = 0
    for x in items:
        if not runs or len(runs[-1]) == _CHUNK or size + len(x) > _CHUNK_CHARS:
            runs.append([])
            size = 0
        runs[-1].append(x)
        size += len(x)
    return runs


def _chunked(name: str, items: Sequence[str]) -> list[str]:
    """`name = [...]` then `name += [...]` over runs of `items` (each an expression)."""
    runs = _runs(items) or [[]]
    return [f"{name} {'+=' if n else '='} [\n{''.join(f'    {x},{chr(10)}' for x in run)}]\n"
            for n, run in enumerate(runs)]


def generate_module(bindings: Sequence[CompiledBinding]) -> list[str]:
    """Python source, in chunks to compile and run in order in one namespace (`run_module`), defining the
    tables of `MatcherTables`."""
    names = _NAMES
    em = _Emitter()
    atoms: list[str] = []
    specs: list[str] = []
    trees: list[str] = []
    functions: list[str] = []
    groups: dict[tuple[str, tuple[str, str]], list[int]] = defaultdict(list)
    derived: dict[tuple[str, str], set[tuple[str, str, str]]] = defaultdict(set)
    for i, b in enumerate(bindings):
        trees.append(_tree_tuple(b.tree, atoms, specs, em))
        functions.append(_Function(em).define(f"m{i}", b.tree))
        groups[(b.domain, b.key)].append(i)
        if b.derived:
            derived[b.key].update(b.derived)

    buckets: list[str] = []
    tables: dict[str, list[str]] = {"windows": [], "telemetry": []}
    for n, ((domain, key), members) in enumerate(groups.items()):
        plan = plan_bucket([(i, bindings[i].tree) for i in members])
        buckets.append(f"({tuple(members)!r}, {plan!r})")
        tables[domain].append(f"    {key!r}: {n},")

    head = ["import re", "import ipaddress", "from vigil.detect.prefilter import BucketPlan", *em.imports]
    consts = [f"{name} = {source}" for source, name in em.consts.items()]
    chunks = ["\n".join(head) + "\n"]
    chunks += ["\n".join(run) + "\n" for run in _runs(consts)]
    chunks += _chunked(names["atoms"], atoms)
    chunks += _chunked(names["specs"], specs)
    chunks += _chunked(names["trees"], trees)
    chunks.append(f"{names['rule_of']} = {[b.rule_index for b in bindings]!r}\n")
    chunks += ["\n".join(run) + "\n" for run in _runs(functions)]
    chunks.append(f"{names['functions']} = [{', '.join(f'm{i}' for i in range(len(bindings)))}]\n")
    chunks += _chunked(names["buckets"], buckets)
    chunks.append("\n".join([f"{names['windows']} = {{", *tables["windows"], "}",
                              f"{names['telemetry']} = {{", *tables["telemetry"], "}"]) + "\n")
    chunks.append(f"{names['derived']} = {({k: tuple(sorted(v)) for k, v in derived.items()})!r}\n")
    return chunks
