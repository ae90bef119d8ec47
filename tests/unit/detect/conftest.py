"""Every detection unit test runs twice: on the C hot path and on the pure-Python one it falls back to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.detect.support import ENGINE_MODULES
from vigil.detect import events


@pytest.fixture(autouse=True, params=["c", "python"])
def engine_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "c":
        if events._speedups is None:
            pytest.skip("the C extension is not built here")
    else:
        for module in ENGINE_MODULES:
            monkeypatch.setattr(module, "_speedups", None)
    yield request.param
