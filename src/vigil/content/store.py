"""The rule content store: imported Sigma releases kept by pack and version, and which rules run where.

Layout under the store's root (`<data dir>/content`)::

    store.json                       packs (source, versions, the current one) and the rule policy
    packs/<pack>/<version>/...       a release's rule files, under their paths in the release
    packs/<pack>/<version>/index.json  per rule file: id, title, status, level; per broken rule: where and why

A rule runs when the policy says so: the most specific setting wins (a device group's rule, its folder, then
the store-wide rule, its folder), else its status decides (`stable`, `test` and no status on; `experimental`,
`deprecated`, `unsupported` off).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from vigil.core.severity import RuleLevel
from vigil.detect import ErrorKind, LoadReport, RuleLoadError, load_rules
from vigil.detect.ruleset import RuleSet

DEFAULT_PACK = "sigmahq"
ON_BY_DEFAULT = frozenset({"stable", "test", ""})  # a rule without a status counts as tested
STATUSES = ("stable", "test", "experimental", "deprecated", "unsupported")
_RULE_SUFFIXES = (".yml", ".yaml")
_KEPT_TEXT = ("license", "readme", "version")  # beside the rules: the release's licence and notes
_MAX_MEMBERS = 100_000
_MAX_BYTES = 1 << 30  # a SigmaHQ release is tens of MiB; more is not a rule release
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RELEASE = re.compile(r"r\d{4}-\d{2}-\d{2}")  # SigmaHQ's release tags


def content_root(data_dir: Path) -> Path:
    """Where a data directory keeps its content store."""
    return data_dir / "content"


class ContentError(Exception):
    """A content operation that cannot be done; the message names what is wrong and where."""


@dataclass(frozen=True)
class RuleEntry:
    """One rule of the store's current versions, as the policy has it for one device group (or store-wide)."""

    pack: str
    version: str
    path: str  # in the release, e.g. rules/linux/auditd/lnx_auditd_x.yml
    rule_id: str
    title: str
    status: str
    level: str  # the effective level: the rule's own unless set
    enabled: bool
    source: str  # where the version was imported from

    @property
    def folder(self) -> str:
        """`pack/folder/of/the/file`: what `enable`/`disable` take to switch a whole folder."""
        return f"{self.pack}/{PurePosixPath(self.path).parent}"


@dataclass(frozen=True)
class ImportReport:
    pack: str
    version: str
    files: int
    rules: int
    errors: tuple[RuleLoadError, ...]  # every rule that did not load, with file, line and column
    current: bool  # whether the version is now the pack's current one
    already: bool = False  # the version was in the store already: nothing was copied


@dataclass(frozen=True)
class _Toggles:
    rules: dict[str, bool]
    folders: dict[str, bool]
    levels: dict[str, str]

    @classmethod
    def parse(cls, raw: Any, where: str) -> _Toggles:
        if not isinstance(raw, dict):
            raise ContentError(f"{where}: expected a mapping")
        rules, folders, levels = (raw.get(k, {}) for k in ("rules", "folders", "levels"))
        if not all(isinstance(m, dict) for m in (rules, folders, levels)):
            raise ContentError(f"{where}: rules, folders and levels must be mappings")
        return cls(dict(rules), dict(folders), dict(levels))

    def plain(self) -> dict[str, Any]:
        return {"rules": self.rules, "folders": self.folders, "levels": self.levels}


class ContentStore:
    """The store at `root`; every change is written at once (atomically), so concurrent readers see a whole
    state."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- state -----------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        path = self.root / "store.json"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"packs": {}, "policy": {"all": _empty(), "groups": {}}}
        except (OSError, ValueError) as e:
            raise ContentError(f"{path}: unreadable content store state: {e}") from None
        if not isinstance(state, dict) or not isinstance(state.get("packs"), dict):
            raise ContentError(f"{path}: not a content store state (no packs)")
        state.setdefault("policy", {"all": _empty(), "groups": {}})
        return state

    def _save(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.root / "store.json", json.dumps(state, indent=2, sort_keys=True).encode())

    def packs(self) -> dict[str, dict[str, Any]]:
        """Pack name -> {"source", "current", "versions": {version: {...}}}."""
        return dict(self._state()["packs"])

    # -- import ----------------------------------------------------------------------------------------

    def import_from(self, source: str, *, pack: str = DEFAULT_PACK, version: str | None = None,
                    update: bool = False) -> ImportReport:
        """`import_release` from a folder, a zip, or the https URL of a release zip (downloaded first: then the
        same path as a zip on disk)."""
        if not source.startswith(("http://", "https://")):
            return self.import_release(Path(source), pack=pack, version=version, update=update)
        with tempfile.TemporaryDirectory(prefix="vigil-release-") as tmp:
            archive = fetch_release(source, Path(tmp))
            return self.import_release(archive, pack=pack, version=version, update=update, origin=source)

    def import_release(self, source: Path, *, pack: str = DEFAULT_PACK, version: str | None = None,
                       update: bool = False, origin: str | None = None) -> ImportReport:
        """Copy the rule files of a release (a folder or a zip, as downloaded from the release page) into the
        store as `pack` at `version` (default: the release tag in its name or `origin`'s, else a hash of its
        files), load them to report every rule that does not load, and make it the pack's current version.
        `update`: the pack must exist (import: it must not). `origin`: where it came from (default `source`)."""
        if not _NAME.match(pack):
            raise ContentError(f"pack name {pack!r}: use letters, digits, '.', '_' or '-'")
        state = self._state()
        known = state["packs"].get(pack)
        if update and known is None:
            raise ContentError(f"no pack {pack!r} in the store yet: import it first (`vigil rules import --from`)")
        if not update and known is not None:
            raise ContentError(f"pack {pack!r} is already in the store (version {known['current']}): use "
                               "`vigil rules update --from` for a new release")
        files = dict(_release_files(source))
        if not any(name.endswith(_RULE_SUFFIXES) for name in files):
            raise ContentError(f"{source}: no Sigma rule files (.yml, .yaml) in it")
        version = version or _version_of(f"{origin or ''} {source.name}", files)
        if not _NAME.match(version):
            raise ContentError(f"version {version!r}: use letters, digits, '.', '_' or '-'")
        target = self.root / "packs" / pack / version
        if known is not None and version in known["versions"]:
            # Kept already: nothing is copied; an update to it makes it the one that runs again (a rollback).
            entry = known["versions"][version]
            if known["current"] != version:
                known["current"] = version
                self._save(state)
            return ImportReport(pack, version, entry["files"], entry["rules"], (), True, already=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{pack}-{version}-", dir=self._staging_dir()))
        try:
            for name, data in files.items():
                path = staging / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            report = load_rules([staging / n for n in sorted(files) if n.endswith(_RULE_SUFFIXES)])
            index = _index(report, staging)
            (staging / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        errors = tuple(replace(e, path=target / e.path.relative_to(staging)) if e.path and e.path.is_relative_to(
            staging) else e for e in report.errors)
        versions = dict(known["versions"]) if known else {}
        versions[version] = {"source": origin or str(source), "files": report.files, "rules": len(report.ruleset),
                             "errors": len(errors), "imported_at": datetime.now(UTC).isoformat(timespec="seconds")}
        state["packs"][pack] = {"current": version, "versions": versions}
        self._save(state)
        return ImportReport(pack, version, report.files, len(report.ruleset), errors, True)

    def _staging_dir(self) -> Path:
        staging = self.root / "packs"
        staging.mkdir(parents=True, exist_ok=True)
        return staging

    # -- what is in the store --------------------------------------------------------------------------

    def entries(self, group: str | None = None) -> list[RuleEntry]:
        """Every rule of every pack's current version, with its effective state for `group` (None: store-wide)."""
        state = self._state()
        policy = _policy(state)
        layers = [policy["all"], *([policy["groups"][group]] if group in policy["groups"] else [])]
        out: list[RuleEntry] = []
        for pack, info in sorted(state["packs"].items()):
            version = info["current"]
            source = info["versions"][version]["source"]
            for rule in self._index(pack, version)["rules"]:
                entry = RuleEntry(pack, version, rule["path"], rule["id"], rule["title"], rule["status"],
                                  rule["level"], rule["status"] in ON_BY_DEFAULT, source)
                out.append(_apply(entry, layers))
        return out

    def load_errors(self) -> list[RuleLoadError]:
        """The rules of the current versions that did not load, with where and why (from their import)."""
        state = self._state()
        out: list[RuleLoadError] = []
        for pack, info in sorted(state["packs"].items()):
            base = self.root / "packs" / pack / info["current"]
            for e in self._index(pack, info["current"])["errors"]:
                out.append(RuleLoadError.at((e["line"], e["column"]) if e["line"] else None, base / e["path"],
                                            ErrorKind(e["kind"]), e["reason"], e["rule_id"], e["title"]))
        return out

    def _index(self, pack: str, version: str) -> dict[str, Any]:
        path = self.root / "packs" / pack / version / "index.json"
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ContentError(f"{path}: unreadable rule index: {e}") from None
        return index  # type: ignore[no-any-return]

    def selection(self, group: str | None = None) -> tuple[list[Path], dict[str, RuleLevel]]:
        """What runs for `group`: the rule files to load (a file of several rules runs when any of them is on)
        and each rule's effective level (for `with_levels`)."""
        entries = [e for e in self.entries(group) if e.enabled]
        files = list(dict.fromkeys(self.root / "packs" / e.pack / e.version / e.path for e in entries))
        return files, {e.rule_id: RuleLevel(e.level) for e in entries}

    def load(self, group: str | None = None, **kw: Any) -> LoadReport:
        """The rules that run for `group`, compiled, at their effective levels (`kw`: load_rules' options)."""
        files, levels = self.selection(group)
        report = load_rules(files, **kw)
        return replace(report, ruleset=with_levels(report.ruleset, levels))

    # -- policy ----------------------------------------------------------------------------------------

    def set_enabled(self, targets: Sequence[str], enabled: bool, group: str | None = None) -> list[str]:
        """Switch rules (by id) or whole folders (`pack/folder`, as `RuleEntry.folder` or any parent of it) on or
        off, store-wide or for device group `group`; returns what each target was taken as."""
        entries = self.entries()
        ids = {e.rule_id for e in entries}
        folders = {f for e in entries for f in _parents(e.folder)}
        state = self._state()
        toggles = _toggles_for(state, group)
        taken: list[str] = []
        for target in targets:
            clean = target.strip().rstrip("/")
            if clean in ids:
                toggles.rules[clean] = enabled
                taken.append(f"rule {clean}")
            elif clean in folders:
                toggles.folders[clean] = enabled
                taken.append(f"folder {clean}")
            else:
                raise ContentError(f"{target!r} is neither a rule id nor a folder of the store (see `vigil rules "
                                   "list`; folders are written pack/path, e.g. sigmahq/rules/linux)")
        _store_toggles(state, group, toggles)
        self._save(state)
        return taken

    def set_level(self, rule_id: str, level: str, group: str | None = None) -> None:
        if rule_id not in {e.rule_id for e in self.entries()}:
            raise ContentError(f"no rule {rule_id!r} in the store (see `vigil rules list`)")
        try:
            RuleLevel(level.lower())
        except ValueError:
            raise ContentError(f"level {level!r}: use one of {', '.join(v.value for v in RuleLevel)}") from None
        state = self._state()
        toggles = _toggles_for(state, group)
        toggles.levels[rule_id] = level.lower()
        _store_toggles(state, group, toggles)
        self._save(state)

    def groups(self) -> list[str]:
        return sorted(_policy(self._state())["groups"])


def with_levels(ruleset: RuleSet, levels: dict[str, RuleLevel]) -> RuleSet:
    """`ruleset` with the rules of `levels` at those levels (the same compiled code: it refers to rules by index)."""
    rules = ruleset.rules
    if not any(levels.get(r.id, r.level) != r.level for r in rules):
        return ruleset
    return RuleSet([replace(r, level=levels.get(r.id, r.level)) for r in rules], ruleset.code, ruleset.correlations)


def _empty() -> dict[str, Any]:
    return {"rules": {}, "folders": {}, "levels": {}}


def _policy(state: dict[str, Any]) -> dict[str, Any]:
    raw = state.get("policy") or {}
    groups = raw.get("groups", {})
    if not isinstance(groups, dict):
        raise ContentError("store.json: policy.groups must be a mapping of device group to settings")
    return {"all": _Toggles.parse(raw.get("all", _empty()), "store.json: policy.all"),
            "groups": {g: _Toggles.parse(t, f"store.json: policy.groups.{g}") for g, t in groups.items()}}


def _toggles_for(state: dict[str, Any], group: str | None) -> _Toggles:
    policy = _policy(state)
    if group is None:
        return policy["all"]  # type: ignore[no-any-return]
    return policy["groups"].get(group) or _Toggles({}, {}, {})


def _store_toggles(state: dict[str, Any], group: str | None, toggles: _Toggles) -> None:
    policy = state.setdefault("policy", {"all": _empty(), "groups": {}})
    if group is None:
        policy["all"] = toggles.plain()
    else:
        policy.setdefault("groups", {})[group] = toggles.plain()


def _parents(folder: str) -> Iterator[str]:
    """`a/b/c`, `a/b`, `a`: a folder and the folders above it."""
    parts = folder.split("/")
    for n in range(len(parts), 0, -1):
        yield "/".join(parts[:n])


def _apply(entry: RuleEntry, layers: Sequence[_Toggles]) -> RuleEntry:
    """The entry with the policy's layers applied, least specific first: each rule setting beats folder ones."""
    enabled, level = entry.enabled, entry.level
    for toggles in layers:
        folder = next((toggles.folders[f] for f in _parents(entry.folder) if f in toggles.folders), None)
        if folder is not None:
            enabled = folder
        if entry.rule_id in toggles.rules:
            enabled = toggles.rules[entry.rule_id]
        level = toggles.levels.get(entry.rule_id, level)
    return replace(entry, enabled=enabled, level=level)


def _index(report: LoadReport, base: Path) -> dict[str, Any]:
    """Per loaded rule its file and metadata, per error where and why: what listing the store reads."""
    rules = [{"path": r.path.relative_to(base).as_posix(), "id": r.id, "title": r.title, "status": r.status,
              "level": r.level.value} for r in report.ruleset.rules if r.path is not None]
    errors = [{"path": e.path.relative_to(base).as_posix() if e.path and e.path.is_relative_to(base) else "",
               "kind": e.kind.value, "reason": e.reason, "rule_id": e.rule_id, "title": e.title, "line": e.line,
               "column": e.column} for e in report.errors]
    return {"rules": rules, "errors": errors}


def _release_files(source: Path) -> Iterable[tuple[str, bytes]]:
    """(path in the release, bytes) of its rule files and its licence/readme, from a folder or a zip."""
    if source.is_dir():
        total = 0
        for path in sorted(source.rglob("*")):
            if path.is_symlink() or not path.is_file() or not _wanted(path.name):
                continue
            if any(part.startswith(".") for part in path.relative_to(source).parts):
                continue
            data = path.read_bytes()
            total += len(data)
            if total > _MAX_BYTES:
                raise ContentError(f"{source}: more than {_MAX_BYTES >> 20} MiB of rule files")
            yield path.relative_to(source).as_posix(), data
        return
    if not source.exists():
        raise ContentError(f"{source}: no such file or directory")
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as e:
        raise ContentError(f"{source}: not a zip file or a folder ({e})") from None
    with archive:
        members = archive.infolist()
        if len(members) > _MAX_MEMBERS:
            raise ContentError(f"{source}: {len(members)} entries (a rule release has fewer than {_MAX_MEMBERS})")
        total = 0
        for m in members:
            if m.is_dir() or not _wanted(PurePosixPath(m.filename).name):
                continue
            name = _safe_member(source, m)
            if stat.S_ISLNK(m.external_attr >> 16):
                continue  # a link in a release is never a rule
            total += m.file_size
            if total > _MAX_BYTES:
                raise ContentError(f"{source}: more than {_MAX_BYTES >> 20} MiB of rule files")
            try:
                data = archive.read(m)
            except (zipfile.BadZipFile, OSError, ValueError) as e:
                raise ContentError(f"{source}: {m.filename}: unreadable ({e})") from None
            yield name, data


def _wanted(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(_RULE_SUFFIXES) or any(lower.startswith(k) for k in _KEPT_TEXT)


def _safe_member(source: Path, member: zipfile.ZipInfo) -> str:
    """The member's path, refused when it would leave the pack's folder."""
    name = member.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]) or not path.parts:
        raise ContentError(f"{source}: entry {member.filename!r} would be written outside the store: refused")
    return path.as_posix()


def _version_of(name: str, files: dict[str, bytes]) -> str:
    """The release tag in `name` (SigmaHQ's `r2024-09-02`, in a zip's name or a download URL's path), else a
    `version` file, else a hash of its files."""
    found = _RELEASE.search(name)
    if found:
        return found.group(0)
    for name, data in files.items():
        if PurePosixPath(name).name.lower() == "version":
            text = data.decode("utf-8", "replace").strip().splitlines()
            if text and _NAME.match(text[0].strip()):
                return text[0].strip()
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name] + b"\0")
    return f"h{h.hexdigest()[:12]}"


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_release(url: str, folder: Path, *, timeout: float = 60.0) -> Path:
    """Download the release zip at `url` (https; plain http only from this machine) into `folder`, at most
    `_MAX_BYTES`, following the release page's redirects; returns the file."""
    import httpx  # only a download needs it: listing and switching rules stay quick to start

    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1",
                                                                                      "localhost")):
        raise ContentError(f"{url}: only https URLs are fetched (plain http only from this machine)")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise ContentError(f"{url}: the server answered {response.status_code}")
            # Named after where the redirects ended, with the release tag of that path (GitHub's
            # .../releases/download/r2024-09-02/sigma_all_rules.zip): what the version is read from.
            final = PurePosixPath(response.url.path)
            name = final.name if _NAME.match(final.name) else "release.zip"
            tag = _RELEASE.search(str(final.parent))
            target = folder / (f"{tag.group(0)}-{name}" if tag and not _RELEASE.search(name) else name)
            size = 0
            with target.open("wb") as fh:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > _MAX_BYTES:
                        raise ContentError(f"{url}: more than {_MAX_BYTES >> 20} MiB: not a rule release")
                    fh.write(chunk)
    except httpx.HTTPError as e:
        raise ContentError(f"{url}: download failed: {e}") from None
    return target
