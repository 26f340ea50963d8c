"""A bounded memo of pure results, for what is built once and reused by later requests
(the evaluator's WHERE clauses and ``rbac`` letters, the controllers' statements)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

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

    def get_or_put(self, key: _K, make: Callable[[], _V]) -> _V:
        """The value kept for ``key``, else ``make()``'s, kept (a value is never None)."""
        found = self.get(key)
        return found if found is not None else self.put(key, make())


class PartsMemo:
    """A bounded memo of what is built from objects compared by identity (statements
    from the evaluator's memoized WHERE clauses): the key is the parts' ids plus plain
    values, and each entry holds its parts, so an id in a live key cannot be reused by
    another object. Parts built anew on each request simply never hit."""

    def __init__(self, size: int) -> None:
        self._entries: Memo[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = Memo(size)

    def get(self, parts: tuple[Any, ...], extra: tuple[Any, ...] = ()) -> Any:
        entry = self._entries.get((tuple(map(id, parts)), extra))
        if entry is None or not all(a is b for a, b in zip(entry[0], parts, strict=True)):
            return None
        return entry[1]

    def put(self, parts: tuple[Any, ...], extra: tuple[Any, ...], value: _V) -> _V:
        self._entries.put((tuple(map(id, parts)), extra), (parts, value))
        return value
