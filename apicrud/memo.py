"""A bounded memo of pure results, for what is built once and reused by later requests
(the evaluator's WHERE clauses and ``rbac`` letters, the controllers' statements)."""

from __future__ import annotations

from typing import TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


class Memo(dict[_K, _V]):
    """A dict that forgets everything once it holds ``size`` entries: a memo of pure
    results whose keys carry all their inputs, so dropping it costs only recomputation."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: _K, value: _V) -> _V:
        if len(self) >= self.size:
            self.clear()
        self[key] = value
        return value
