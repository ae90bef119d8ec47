"""Property-based fuzzing of the agent API on one real server: no body gets an answer of 500 or more.

Hypothesis strategies built from the telemetry declaration fuzz the upload route (rows, envelopes, raw bytes and
encodings, deep nesting); schemathesis fuzzes every agent route from the server's own OpenAPI document
(``/api/openapi.json``), with bodies that fit the schema and bodies that break it.

The server runs on PostgreSQL when it is reachable (the stricter store: no NUL in text, bounded columns),
else on SQLite. The budgets below add up to the issue's 10,000 bodies; each test checks it sent its share.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis.core import NOT_SET
from schemathesis.generation.modes import GenerationMode

from tests.conftest import PG_URL, _pg_admin_conn
from tests.security.fuzz_support import Fuzz, Request, fuzz_settings, server_errors, start_fuzz
from vigil.core.telemetry import TABLES, Column, ColumnType
from vigil.wire import TELEMETRY_PATH

PER_EXAMPLE = 8  # bodies per generated example, sent concurrently
# Rows per generated body: generating rows is what costs (the client, not the server), and the suite runs in
# `make test` on 2 cores; a batch-level property needs only a few rows to mix good and bad ones.
ROWS_PER_BODY = 12
BUDGET = {  # bodies per test
    "rows": 4_000,
    "envelopes": 1_600,
    "bytes": 1_200,
    "nesting": 800,
    "schemathesis": 2_400,
}
assert sum(BUDGET.values()) >= 10_000


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory, postgres_available: str | None) -> Iterator[Fuzz]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "server"
    if postgres_available:
        yield from start_fuzz(data_dir, "")
        return
    name = f"vigil_fuzz_{uuid.uuid4().hex[:12]}"
    with _pg_admin_conn() as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield from start_fuzz(data_dir, f"{PG_URL.rsplit('/', 1)[0]}/{name}")
    finally:
        with _pg_admin_conn() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- values ----------------------------------------------------------------------------------------

NOW = datetime.now(UTC)
EDGE_TIMES = [
    "0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59.999999",
    "1999-12-31T23:59:59Z", "2000-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:00+23:59", "2026-01-01T00:00:00-23:59", "2026-01-01", "2026-W01-1", "20260101T000000",
    "", " ", "now", "2026-01-01T00:00:00.123456789Z", (NOW + timedelta(hours=23)).isoformat(),
    (NOW + timedelta(days=2)).isoformat(), "2026-01-01T00:00:00" + "0" * 100,
]
EDGE_STRINGS = ["", "\x00", "a\x00b", "\u2028", "\ufeff", "😀" * 10, "\\u0000", "' OR 1=1 --", "%s%n", "A" * 255,
                "A" * 256, "A" * 32_768, "A" * 32_769, "\U0010ffff", "\x7f\x1b[31m"]
BIG_INTS = [-(2**63) - 1, -(2**63), -(2**31) - 1, -1, 0, 65_535, 65_536, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 10**30]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
nasty = st.one_of(json_value, st.sampled_from(EDGE_STRINGS), st.sampled_from(BIG_INTS), st.sampled_from(EDGE_TIMES))


def _time_text(dt: datetime) -> str:
    return dt.isoformat()


# Built once: every new `st.timezones()` lists the zone database from disk (~20 ms), and a row draws one per
# datetime column, which once made this suite's time (10+ minutes for 4,000 bodies) the time of walking that tree.
TIMEZONES = st.none() | st.timezones()


def good_value(column: Column) -> st.SearchStrategy[Any]:
    kind = column.type
    if kind is ColumnType.STRING:
        return st.text(max_size=min(column.max_length or 64, 64))
    if kind in (ColumnType.INT, ColumnType.LONG):
        low = column.minimum if column.minimum is not None else -(2**31 if kind is ColumnType.INT else 2**63)
        high = column.maximum if column.maximum is not None else (2**31 if kind is ColumnType.INT else 2**63) - 1
        return st.integers(low, high)
    if kind is ColumnType.BOOL:
        return st.booleans()
    if kind is ColumnType.DATETIME:
        return st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2026, 11, 1),
                            timezones=TIMEZONES).map(_time_text)
    return st.dictionaries(st.text(max_size=8), json_value, max_size=4) | st.lists(json_value, max_size=4)


def any_time() -> st.SearchStrategy[str]:
    # Every year datetime holds, with offsets: the conversion to UTC overflows at both ends.
    return st.datetimes(timezones=TIMEZONES).map(_time_text) | st.sampled_from(EDGE_TIMES)


@st.composite
def rows(draw: st.DrawFn, fuzz: Fuzz) -> dict[str, Any]:
    table = draw(st.sampled_from(list(TABLES.values())))
    row: dict[str, Any] = {
        "table": table.name,
        "Timestamp": draw(good_value(table.column("Timestamp"))),
        "DeviceId": draw(st.sampled_from([fuzz.device_id] * 8 + [fuzz.other_device_id, "", "x" * 41])),
        "ActionType": draw(st.sampled_from(table.action_types) | st.text(max_size=10)),
        "ReportId": draw(st.integers(0, 2**40)),
    }
    for column in draw(st.lists(st.sampled_from(table.columns), unique=True, max_size=8)):
        bad = draw(st.integers(0, 3)) == 0
        if column.type is ColumnType.DATETIME and bad:
            row[column.name] = draw(any_time())
        else:
            row[column.name] = draw(nasty if bad else good_value(column))
    mutation = draw(st.integers(0, 12))
    if mutation == 0:
        row.pop(draw(st.sampled_from(sorted(row))))
    elif mutation == 1:
        row[draw(st.text(max_size=12))] = draw(nasty)
    elif mutation == 2:
        row["table"] = draw(st.text(max_size=20) | nasty)
    return row


def batch_body(events: list[Any], batch_id: Any = None) -> bytes:
    # The standard library's encoder: unlike orjson it writes integers past 64 bits, NaN and Infinity.
    return json.dumps({"batch_id": batch_id or uuid.uuid4().hex, "events": events}).encode()


def telemetry(body: bytes, gzipped: bool = False, **headers: str) -> Request:
    if gzipped:
        body = gzip.compress(body, compresslevel=1)
        headers.setdefault("Content-Encoding", "gzip")
    return Request(TELEMETRY_PATH, body, headers)


def check(fuzz: Fuzz, requests: list[Request]) -> list[Any]:
    answers = fuzz.send(requests)
    assert not server_errors(requests, answers), "\n".join(server_errors(requests, answers))
    for a in answers:
        doc = a.json()
        assert isinstance(doc, dict) and (a.status == 200 or {"error", "detail"} <= doc.keys()), a.text
    log = fuzz.new_log()
    assert "Traceback" not in log, log[-3000:]
    return answers


def _examples(name: str) -> int:
    return BUDGET[name] // PER_EXAMPLE


# -- the properties --------------------------------------------------------------------------------


def _sent_share(fuzz: Fuzz, before: int, name: str) -> None:
    assert fuzz.sent - before >= BUDGET[name], f"{name}: sent {fuzz.sent - before} bodies, budget {BUDGET[name]}"


def test_rows_each_answered_4xx_or_stored_with_their_rejects_named(fuzz: Fuzz) -> None:
    before = fuzz.sent

    @fuzz_settings(_examples("rows"))
    @given(st.data())
    def run(data: st.DataObject) -> None:
        batches = [data.draw(st.lists(rows(fuzz), max_size=ROWS_PER_BODY)) for _ in range(PER_EXAMPLE)]
        zipped = data.draw(st.lists(st.booleans(), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
        requests = [telemetry(batch_body(b), z) for b, z in zip(batches, zipped, strict=True)]
        for events, request, answer in zip(batches, requests, check(fuzz, requests), strict=True):
            if answer.status == 400:  # the standard library wrote NaN or Infinity, which JSON does not have
                assert answer.json()["error"] == "malformed_json", answer.text
                assert b"NaN" in request.body or b"Infinity" in request.body or request.headers, answer.text
                continue
            assert answer.status in (200, 413, 422), answer.text
            if answer.status == 200:
                ack = answer.json()
                assert ack["accepted"] + ack["rejected"] == len(events)
                assert all(0 <= r["index"] < len(events) for r in ack["rejections"])
                assert len({r["index"] for r in ack["rejections"]}) == len(ack["rejections"])
            elif answer.status == 422:
                assert answer.json()["field"], answer.text

    run()
    _sent_share(fuzz, before, "rows")


envelopes = st.one_of(
    json_value,
    st.fixed_dictionaries({"batch_id": json_value | st.text(min_size=8, max_size=70), "events": json_value}),
    st.fixed_dictionaries({"batch_id": st.text(min_size=8, max_size=64),
                           "events": st.lists(json_value | nasty, max_size=6)}),
    st.dictionaries(st.text(max_size=10), json_value, max_size=4),
)


def test_any_json_envelope_is_answered_below_500(fuzz: Fuzz) -> None:
    before = fuzz.sent

    @fuzz_settings(_examples("envelopes"))
    @given(st.lists(envelopes, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def run(docs: list[Any]) -> None:
        check(fuzz, [telemetry(json.dumps(d).encode()) for d in docs])

    run()
    _sent_share(fuzz, before, "envelopes")


raw_bodies = st.one_of(
    st.binary(max_size=600).map(lambda b: (b, {})),
    st.binary(max_size=600).map(lambda b: (gzip.compress(b)[: len(b) // 2 + 10], {"Content-Encoding": "gzip"})),
    st.tuples(st.binary(max_size=200), st.sampled_from(["gzip", "GZIP", "deflate", "br", "identity", "", "x" * 300]))
    .map(lambda t: (t[0], {"Content-Encoding": t[1]})),
    st.text(max_size=300).map(lambda t: (t.encode("utf-8", "surrogatepass"), {})),
)


def test_any_bytes_and_encoding_are_answered_below_500(fuzz: Fuzz) -> None:
    before = fuzz.sent

    @fuzz_settings(_examples("bytes"))
    @given(st.lists(raw_bodies, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def run(bodies: list[tuple[bytes, dict[str, str]]]) -> None:
        check(fuzz, [telemetry(b, **h) for b, h in bodies])

    run()
    _sent_share(fuzz, before, "bytes")


def _nested_text(depth: int, opener: str) -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return opener * depth + "1" + closer * depth


def test_deep_nesting_anywhere_is_answered_below_500(fuzz: Fuzz) -> None:
    """The nesting that raised RecursionError (990 deep) and past what the JSON parser accepts."""
    before = fuzz.sent

    @fuzz_settings(_examples("nesting"))
    @given(st.lists(st.tuples(st.integers(1, 3_000), st.sampled_from(["[", '{"a":']),
                              st.sampled_from(["AdditionalFields", "IPAddresses", "events", "batch_id"]),
                              st.booleans()),
                    min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def run(shapes: list[tuple[int, str, str, bool]]) -> None:
        requests = []
        for depth, opener, where, zipped in shapes:
            deep = _nested_text(depth, opener)
            if where in ("events", "batch_id"):
                other = '"events":[]' if where == "batch_id" else f'"batch_id":"{uuid.uuid4().hex}"'
                body = f'{{"{where}":{deep},{other}}}'
            else:
                row = (f'{{"table":"DeviceInfo","Timestamp":"2026-11-28T09:00:00Z","DeviceId":"{fuzz.device_id}",'
                       f'"ActionType":"DeviceInfo","ReportId":1,"{where}":{deep}}}')
                body = f'{{"batch_id":"{uuid.uuid4().hex}","events":[{row}]}}'
            requests.append(telemetry(body.encode(), zipped))
        check(fuzz, requests)

    run()
    _sent_share(fuzz, before, "nesting")


# -- schemathesis over the agent routes of the server's OpenAPI document ------------------------------

# Bodies per (route, generation mode). Not fuzzed: /agent/v1/actions/poll, a long poll whose every valid `wait`
# holds the request open for seconds (its query parameter is checked by the same validation as the others).
SCHEMATHESIS_ROUTES = {
    ("/agent/v1/telemetry", GenerationMode.POSITIVE): 480,
    ("/agent/v1/telemetry", GenerationMode.NEGATIVE): 480,
    ("/agent/v1/heartbeat", GenerationMode.POSITIVE): 320,
    ("/agent/v1/heartbeat", GenerationMode.NEGATIVE): 320,
    ("/agent/v1/actions/{action_id}/result", GenerationMode.POSITIVE): 240,
    ("/agent/v1/actions/{action_id}/result", GenerationMode.NEGATIVE): 240,
    ("/agent/v1/enroll", GenerationMode.POSITIVE): 120,
    ("/agent/v1/enroll", GenerationMode.NEGATIVE): 120,
    ("/agent/v1/actions/{action_id}/artifact", GenerationMode.POSITIVE): 80,  # a path parameter only: no negative
}
assert sum(SCHEMATHESIS_ROUTES.values()) == BUDGET["schemathesis"]


def _case_request(case: Any) -> Request:
    body = case.body
    if body is NOT_SET:
        content = b""
    elif isinstance(body, bytes):
        content = body
    else:
        content = json.dumps(body).encode()
    headers = {k: str(v) for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if case.media_type:
        headers.setdefault("Content-Type", case.media_type)
    query = "&".join(f"{k}={v}" for k, v in (case.query or {}).items())
    return Request(case.formatted_path + (f"?{query}" if query else ""), content, headers)


@pytest.mark.parametrize(("route", "mode"), list(SCHEMATHESIS_ROUTES), ids=lambda v: str(v).rsplit("/", 1)[-1])
def test_schemathesis_over_the_agent_openapi_is_answered_below_500(
    fuzz: Fuzz, route: str, mode: GenerationMode
) -> None:
    with fuzz.server.client() as c:
        doc = c.get("/api/openapi.json").raise_for_status().json()
    assert route in doc["paths"], sorted(p for p in doc["paths"] if p.startswith("/agent/"))
    operation = schemathesis.openapi.from_dict(doc)[route]["POST"]
    share = SCHEMATHESIS_ROUTES[(route, mode)]
    before = fuzz.sent

    @fuzz_settings(share // PER_EXAMPLE)
    @given(st.lists(operation.as_strategy(generation_mode=mode), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def run(cases: list[Any]) -> None:
        check(fuzz, [_case_request(c) for c in cases])

    run()
    assert fuzz.sent - before >= share, f"{route} {mode}: sent {fuzz.sent - before} bodies, share {share}"
