"""Values for Sigma's `|expand` placeholders (`%name%`), given as data: a YAML or TOML file of name -> values."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vigil.detect.ir import RuleContentError

# Placeholder name -> its values; a rule value with `%name%` matches when any value put in its place does.
Placeholders = Mapping[str, tuple[str, ...]]


class PlaceholderFileError(Exception):
    """A placeholder file that cannot be used; the message names the file and what is wrong."""


class UnresolvedPlaceholder(RuleContentError):
    """A rule uses `%name%` with `|expand` and no value was given for it; the loader reports it against the rule."""

    def __init__(self, name: str) -> None:
        super().__init__(f"placeholder %{name}% (|expand) has no value: give it in a placeholder file "
                         "(--placeholders FILE)")
        self.name = name


def parse_placeholders(data: Any, where: str) -> dict[str, tuple[str, ...]]:
    """Check a parsed file (a mapping of name -> a string, a number or a list of them) and normalise it."""
    if not isinstance(data, Mapping):
        raise PlaceholderFileError(f"{where}: expected a mapping of placeholder name to values, "
                                   f"found {type(data).__name__}")
    out: dict[str, tuple[str, ...]] = {}
    for name, raw in data.items():
        if not isinstance(name, str) or not name or "%" in name or "\\" in name:
            raise PlaceholderFileError(f"{where}: {name!r} is not a placeholder name (text without % or \\)")
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise PlaceholderFileError(f"{where}: placeholder {name!r} has an empty list (give at least one value)")
        for v in values:
            # bool is an int: `true` would silently become '1' or 'True'
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise PlaceholderFileError(f"{where}: placeholder {name!r} has a value that is not text or a "
                                           f"number: {v!r}")
        out[name] = tuple(str(v) for v in values)
    return out


def load_placeholders(path: Path) -> dict[str, tuple[str, ...]]:
    """Read placeholder values from a `.yml`/`.yaml` or `.toml` file."""
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PlaceholderFileError(f"{path}: {e.strerror or e}") from e
    if suffix == ".toml":
        import tomllib

        try:
            data: Any = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise PlaceholderFileError(f"{path}: invalid TOML: {e}") from e
    elif suffix in (".yml", ".yaml"):
        import yaml  # only when a placeholder file is given: a warm start reads no YAML

        try:
            data = yaml.safe_load(raw.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            raise PlaceholderFileError(f"{path}: invalid YAML: {e}") from e
    else:
        raise PlaceholderFileError(f"{path}: unknown placeholder file type {suffix or '(none)'!r} "
                                   "(use .yml, .yaml or .toml)")
    return parse_placeholders({} if data is None else data, str(path))
