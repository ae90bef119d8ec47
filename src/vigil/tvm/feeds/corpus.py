"""One file of a raw feed corpus, recognised by its name and content and parsed: OSV records (JSON or YAML),
the Debian tracker's DSA/DLA lists, CISA KEV (JSON or CSV), EPSS (CSV, optionally gzipped). Bytes in, parsed
facts out: walking folders and zip exports is the adapter's job (`vigil.content.tvm_feeds`).

Files that are not feed data (README, LICENSE, a JSON schema, the tracker's PROVENANCE) are `skipped`, not
errors; a feed file that cannot be read is reported with its path and the rest of the corpus still loads.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from vigil.tvm.feeds import FeedError
from vigil.tvm.feeds.debian_tracker import parse_list
from vigil.tvm.feeds.exploitation import Epss, cvss_base_score, parse_epss_csv, parse_kev_csv, parse_kev_json
from vigil.tvm.feeds.osv import parse_osv
from vigil.tvm.model import Advisory

_DEBIAN_HEADER = re.compile(rb"^\[\d{1,2} \w{3} \d{4}\] (?:DSA|DLA)-\d", re.MULTILINE)
_DEBIAN_DATE = re.compile(r"^\[(\d{1,2}) (\w{3}) (\d{4})\]", re.MULTILINE)
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
)}
_VENDOR_PREFIX = re.compile(r"^(Critical|Important|Moderate|Low):", re.IGNORECASE)  # AlmaLinux/Red Hat summaries
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class StoredAdvisory:
    """An advisory with what the store keeps beside it: its source, severity label and best CVSS base score."""

    advisory: Advisory
    source: str
    severity: str | None = None  # critical / high / medium / low, or None when the feed gives none
    cvss: float | None = None
    modified: str | None = None


@dataclass(slots=True)
class ParsedFile:
    kind: str  # osv, debian, kev, epss or skipped
    advisories: list[StoredAdvisory] = field(default_factory=list)
    kev: set[str] = field(default_factory=set)
    epss: dict[str, Epss] = field(default_factory=dict)
    errors: list[FeedError] = field(default_factory=list)
    newest: str | None = None  # ISO date of the newest entry, for the feed's age


def cvss_label(score: float) -> str | None:
    """CVSS's qualitative rating of a base score."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low" if score > 0 else None


def parse_file(path: str, data: bytes, source: str) -> ParsedFile:
    """Recognise and parse one corpus file; `path` is its name inside the corpus (for errors and recognition)."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            return ParsedFile("skipped", errors=[FeedError(path, None, f"not gzip: {e}")])
        name = name[:-3]
    try:
        if name.endswith((".yaml", ".yml")):
            return _osv_file(path, _yaml(path, data), source)
        if name.endswith(".json"):
            return _json_file(path, data, source)
        if name.endswith(".csv"):
            return _csv_file(path, data)
        if name == "list" and _DEBIAN_HEADER.search(data[:4096]):
            return _debian_file(path, data, source)
    except FeedError as e:
        return ParsedFile("skipped", errors=[e])
    return ParsedFile("skipped")


def _text(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FeedError(path, None, f"not UTF-8 text (byte {e.start})") from None


def _yaml(path: str, data: bytes) -> Any:
    try:
        return yaml.load(data, Loader=_YAML_LOADER)  # noqa: S506 - the C safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise FeedError(path, mark.line + 1 if mark else None, f"not YAML: {getattr(e, 'problem', e)}") from None


def _json_file(path: str, data: bytes, source: str) -> ParsedFile:
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        line = e.lineno if isinstance(e, json.JSONDecodeError) else None
        raise FeedError(path, line, f"not JSON: {getattr(e, 'msg', e)}") from None
    if isinstance(doc, dict) and "vulnerabilities" in doc and ("catalogVersion" in doc or "dateReleased" in doc):
        out = ParsedFile("kev", kev=parse_kev_json(_text(path, data), path))
        released = doc.get("dateReleased")
        out.newest = str(released)[:10] if released else None
        return out
    if isinstance(doc, list):  # an OSV export of several records in one file
        merged = ParsedFile("osv")
        for i, record in enumerate(doc):
            part = _osv_file(f"{path}[{i}]", record, source)
            merged.advisories += part.advisories
            merged.errors += part.errors
            merged.newest = max(filter(None, (merged.newest, part.newest)), default=None)
        return merged
    if isinstance(doc, dict) and ("$schema" in doc or "id" not in doc):
        return ParsedFile("skipped")  # a JSON schema or other metadata, not a record
    return _osv_file(path, doc, source)


def _osv_file(path: str, record: Any, source: str) -> ParsedFile:
    if not isinstance(record, dict) or "id" not in record:
        return ParsedFile("skipped")
    try:
        advisory = parse_osv(record, path)
    except FeedError as e:
        return ParsedFile("osv", errors=[e])
    cvss: float | None = None
    errors: list[FeedError] = []
    for kind, vector in advisory.severity:
        if kind.startswith("CVSS"):
            try:
                score = cvss_base_score(kind, vector)
            except ValueError as e:
                errors.append(FeedError(path, None, str(e)))
                continue
            cvss = score if cvss is None else max(cvss, score)
    severity = cvss_label(cvss) if cvss is not None else _vendor_severity(record)
    modified = str(record.get("modified") or record.get("published") or "")[:10] or None
    if modified and modified.startswith("0001"):  # the Go database leaves its dates unset in the files
        modified = None
    stored = StoredAdvisory(advisory, source, severity, cvss, modified)
    return ParsedFile("osv", [stored], errors=errors, newest=modified)


def _vendor_severity(record: dict[str, Any]) -> str | None:
    specific = record.get("database_specific")
    if isinstance(specific, dict) and isinstance(specific.get("severity"), str):
        label = str(specific["severity"]).lower()
        return {"moderate": "medium", "important": "high"}.get(label, label)
    m = _VENDOR_PREFIX.match(str(record.get("summary") or ""))
    if m:
        return {"moderate": "medium", "important": "high"}.get(m.group(1).lower(), m.group(1).lower())
    return None


def _csv_file(path: str, data: bytes) -> ParsedFile:
    text = _text(path, data)
    first = text.split("\n", 2)
    header = first[1] if first and first[0].startswith("#") and len(first) > 1 else first[0] if first else ""
    if "cveID" in header:
        return ParsedFile("kev", kev=parse_kev_csv(text, path))
    if "epss" in header and "cve" in header:
        m = re.search(r"score_date:(\d{4}-\d{2}-\d{2})", first[0] if first else "")
        return ParsedFile("epss", epss=parse_epss_csv(text, path), newest=m.group(1) if m else None)
    return ParsedFile("skipped")


def _debian_file(path: str, data: bytes, source: str) -> ParsedFile:
    text = _text(path, data)
    advisories, errors = parse_list(text, path)
    dates = [f"{y}-{_MONTHS.get(mo, 1):02d}-{int(d):02d}" for d, mo, y in _DEBIAN_DATE.findall(text)]
    return ParsedFile(
        "debian",
        [StoredAdvisory(a, source) for a in advisories],
        errors=errors,
        newest=max(dates) if dates else None,
    )
