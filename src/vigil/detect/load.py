"""Loading rules, the engine's entry points: read, parse and assemble (or take the compiled-rule cache), compile."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vigil.detect.cache import CacheEntry, RuleCache, cache_key, settings_text
from vigil.detect.mappings import SourceMapping, default_mappings
from vigil.detect.model import AbsentFields, RuleFilter, RuleLoadError, RuleNote
from vigil.detect.ruleset import RuleSet
from vigil.detect.sources import read_sources

if TYPE_CHECKING:
    from vigil.detect.assembly import Assembled
    from vigil.detect.placeholders import Placeholders


@dataclass(frozen=True)
class LoadReport:
    ruleset: RuleSet
    errors: tuple[RuleLoadError, ...] = ()
    notes: tuple[RuleNote, ...] = ()
    absent: tuple[AbsentFields, ...] = ()  # per rule and source, the fields absent there
    files: int = 0
    cache: str = ""  # compiled-rule cache: "" (not used), "hit", "stored", or why it was not written

    @property
    def ok(self) -> bool:
        return not self.errors


def load_rules(
    paths: Iterable[Path],
    *,
    rule_filter: RuleFilter | None = None,
    mappings: Sequence[SourceMapping] | None = None,
    cache_dir: Path | None = None,
    placeholders: Placeholders | None = None,
) -> LoadReport:
    """Load every rule under `paths`; broken rules are reported in the report, the rest compile. Sigma filters
    among them apply to the rules they name in any file; `placeholders` gives `|expand` values.

    With `cache_dir`, the compiled result is kept there under a hash of the rule files' paths and bytes,
    the mappings, the filter, the placeholders and the engine's own code: an unchanged rule set loads without
    parsing.
    """
    sources, read_errors = read_sources(paths)
    store = RuleCache(cache_dir) if cache_dir is not None else None
    # The shipped mappings are files of this package, which the engine fingerprint already hashes: a warm
    # start does not parse them.
    settings = settings_text(rule_filter, *(mappings if mappings is not None else ("shipped mappings",)),
                             *((dict(placeholders),) if placeholders else ()))
    key = cache_key(sources, settings) if store is not None else ""
    if store is not None and read_errors == []:  # read errors depend on the file system: never cached
        entry = store.get(key)
        if entry is not None:
            return LoadReport(ruleset=RuleSet(entry.rules, entry.code, entry.correlations), errors=entry.errors,
                              notes=entry.notes, absent=entry.absent, files=entry.files, cache="hit")
    # pySigma (through `loading`) is imported only to compile: a warm start never needs it.
    from vigil.detect.assembly import assemble
    from vigil.detect.loading import load_source

    assembled = assemble((load_source(s, placeholders) for s in sources), rule_filter, read_errors)
    report = _compiled(assembled, mappings, len(sources))
    if store is not None and not read_errors:
        ruleset = report.ruleset
        try:
            store.put(key, CacheEntry(ruleset.rules, ruleset.code, report.errors, report.notes, report.files,
                                      ruleset.correlations, report.absent))
        except OSError as e:  # a read-only or full cache directory costs speed, never the load
            return replace(report, cache=f"not written to {cache_dir}: {e}")
        return replace(report, cache="stored")
    return report


def load_rules_text(
    text: str,
    path: Path | None = None,
    *,
    mappings: Sequence[SourceMapping] | None = None,
    placeholders: Placeholders | None = None,
) -> LoadReport:
    """Load rules from YAML text (one or more documents), e.g. rules kept in a database."""
    from vigil.detect.assembly import assemble
    from vigil.detect.loading import load_text

    return _compiled(assemble([load_text(text, path, placeholders)]), mappings, 1)


def _compiled(assembled: Assembled, mappings: Sequence[SourceMapping] | None, files: int) -> LoadReport:
    from vigil.detect.compiler import compile_rules

    compiled = compile_rules(assembled.rules, default_mappings() if mappings is None else mappings)
    ruleset = RuleSet(tuple(r.info for r in assembled.rules), compiled.code, assembled.correlations)
    return LoadReport(ruleset=ruleset, errors=assembled.errors, notes=compiled.notes, absent=compiled.absent,
                      files=files)
