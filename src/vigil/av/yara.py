"""YARA rules through YARA-X: compiled once (when a bundle is built), shipped serialized, a Scanner per thread."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yara_x

from vigil.av.model import Severity, Source, Threat, ThreatType, severity_for

RULE_SUFFIXES = (".yar", ".yara")
# External variables rule sets such as signature-base use; set per file at scan time.
GLOBALS = {"filename": "", "filepath": "", "extension": "", "filetype": "", "owner": ""}
_RULE_HEAD = re.compile(rb"^\s*(?:(?:private|global)\s+)*rule\s+\w+", re.MULTILINE)
_SCAN_TIMEOUT_SECONDS = 30


@dataclass
class CompileReport:
    files: int = 0
    rules: int = 0
    refused: int = 0
    refused_examples: list[str] = field(default_factory=list)


def rule_files(folders: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for folder in folders:
        if folder.is_file():
            out.append(folder)
        elif folder.is_dir():
            out.extend(sorted(p for p in folder.rglob("*") if p.suffix.lower() in RULE_SUFFIXES and p.is_file()))
        else:
            raise FileNotFoundError(f"{folder}: no such YARA file or folder")
    return out


def compile_folders(folders: Iterable[Path]) -> tuple[yara_x.Rules, CompileReport]:
    """Every rule YARA-X compiles from these files/folders; the report counts those it refuses (and why)."""
    compiler = yara_x.Compiler(relaxed_re_syntax=True)
    compiler.ignore_invalid_rules(True)
    for name, value in GLOBALS.items():
        compiler.define_global(name, value)
    report = CompileReport()
    total = 0
    ignored_rules = getattr(compiler, "ignored_rules")  # noqa: B009 (its stub lacks self)
    for i, path in enumerate(rule_files(folders)):
        source = path.read_bytes()
        heads = len(_RULE_HEAD.findall(source))
        report.files += 1
        total += heads
        compiler.new_namespace(f"f{i}")
        errors_before, ignored_before = len(compiler.errors()), len(ignored_rules())
        try:
            compiler.add_source(source.decode("utf-8", "replace"), origin=str(path))
        except yara_x.CompileError as e:
            new_errors: list[Any] = [{"type": "SyntaxError", "text": str(e)}]
        else:
            new_errors = list(compiler.errors()[errors_before:])
        new_ignored: list[Any] = list(ignored_rules()[ignored_before:])
        # A syntax error refuses the whole file; any other error refuses only its rule (yara-x goes on).
        refused = heads if any(err.get("type") == "SyntaxError" for err in new_errors) else len(new_ignored)
        report.refused += refused
        if refused and len(report.refused_examples) < 10:
            first = str(new_errors[0].get("text", "")).splitlines()[0] if new_errors else "ignored"
            report.refused_examples.append(f"{path}: {first}")
    rules = compiler.build()
    report.rules = max(0, total - report.refused)  # yara-x's Python binding exposes no count of compiled rules
    return rules, report


def compile_source(source: str) -> yara_x.Rules:
    compiler = yara_x.Compiler(relaxed_re_syntax=True)
    for name, value in GLOBALS.items():
        compiler.define_global(name, value)
    compiler.add_source(source)
    return compiler.build()


def serialize(rules: yara_x.Rules) -> bytes:
    buf = io.BytesIO()
    rules.serialize_into(buf)
    return buf.getvalue()


def deserialize(data: bytes) -> yara_x.Rules:
    return yara_x.Rules.deserialize_from(io.BytesIO(data))


_CATEGORIES = {"ransomware": "Ransom", "backdoor": "Backdoor", "trojan": "Trojan", "virus": "Virus",
               "worm": "Worm", "exploit": "Exploit", "hacktool": "HackTool", "downloader": "TrojanDownloader",
               "dropper": "TrojanDropper", "webshell": "Backdoor", "rootkit": "Rootkit", "coinminer": "PUA",
               "miner": "PUA", "pua": "PUA", "adware": "PUA", "spyware": "TrojanSpy", "infostealer": "PWS"}
_PLATFORMS = {"linux": "Linux", "win32": "Win32", "win64": "Win64", "windows": "Win32", "macos": "MacOS",
              "osx": "MacOS", "android": "AndroidOS", "php": "PHP", "js": "JS", "python": "Python"}


def threat_of(rule: yara_x.Rule) -> Threat:
    """A Defender-style name for a matched rule: meta ``threat_name`` if given, else Category:Platform/Name."""
    meta = {k: v for k, v in rule.metadata}
    ident = rule.identifier
    explicit = meta.get("threat_name")
    if isinstance(explicit, str) and ":" in explicit:
        name = explicit
    else:
        kind = str(meta.get("tc_detection_type") or meta.get("malware_type") or meta.get("threat_type") or "")
        category = _CATEGORIES.get(kind.lower().replace(" ", ""))
        if category is None:
            head = ident.split("_", 1)[0].lower()
            category = "HackTool" if head in ("hktl", "hacktool") else "PUA" if head in ("pua", "pup") else "Trojan"
        prefix = ident.split("_", 1)[0].lower()
        platform = _PLATFORMS.get(prefix) or next(
            (_PLATFORMS[t.lower()] for t in rule.tags if t.lower() in _PLATFORMS), "Multi")
        base = str(meta.get("tc_detection_name") or ident)
        name = f"{category}:{platform}/{base}"
    type_ = ThreatType.PUA if name.lower().startswith(("pua:", "pup:")) else ThreatType.MALWARE
    severity = severity_for(type_)
    score = meta.get("score")
    if isinstance(score, int) and score < 60:
        severity = Severity.LOW
    return Threat(name, type_, severity, Source.YARA, f"{rule.namespace}.{ident}" if rule.namespace != "default"
                  else ident)


class ThreadScanners:
    """yara-x's Scanner is not shareable across threads: one per thread, made on first use."""

    def __init__(self, rules: yara_x.Rules) -> None:
        self.rules = rules
        self._local = threading.local()

    def scanner(self) -> yara_x.Scanner:
        s: yara_x.Scanner | None = getattr(self._local, "scanner", None)
        if s is None:
            s = yara_x.Scanner(self.rules)
            s.set_timeout(_SCAN_TIMEOUT_SECONDS)
            self._local.scanner = s
        return s

    def _named(self, path: str) -> yara_x.Scanner:
        s = self.scanner()
        name = path.rsplit("/", 1)[-1]
        s.set_global("filepath", path)
        s.set_global("filename", name)
        s.set_global("extension", name.rsplit(".", 1)[-1].lower() if "." in name else "")
        return s

    def scan(self, data: bytes, path: str) -> list[Threat]:
        return [threat_of(r) for r in self._named(path).scan(data).matching_rules]

    def scan_file(self, path: str) -> list[Threat]:
        return [threat_of(r) for r in self._named(path).scan_file(path).matching_rules]
