from collections.abc import Iterable, Mapping
from typing import Any

def evtx_views(record: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bool] | None: ...
def candidates(
    low: dict[str, Any], always: Iterable[int], eq: tuple[Any, ...], sub: tuple[Any, ...], has: tuple[Any, ...]
) -> set[int]: ...
