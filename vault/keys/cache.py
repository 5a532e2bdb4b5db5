"""A bounded in-memory cache of unwrapped keys.

Unwrapped keys are the most sensitive thing in the process, so the cache is
bounded three ways: number of entries, age, and number of uses per entry.
Whichever bound is hit first evicts the key and the next use unwraps it
again. Shredding discards entries explicitly.

``get`` takes no lock: dict lookups are atomic under the GIL and the use
counter is an ``itertools.count``, so the warm read path costs one lookup,
one counter step and one clock read.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class CacheLimits:
    max_entries: int = 10_000
    max_age_seconds: float = 300.0
    max_uses: int = 100_000

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_age_seconds <= 0 or self.max_uses < 1:
            raise ValueError("cache limits must be positive")


class _Entry(Generic[T]):
    __slots__ = ("deadline", "uses", "value")

    def __init__(self, value: T, deadline: float) -> None:
        self.value = value
        self.deadline = deadline
        self.uses = itertools.count(1)


class KeyCache(Generic[T]):
    """Maps a key id to an unwrapped key (or an object holding one)."""

    def __init__(self, limits: CacheLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._max_uses = limits.max_uses
        self._clock = clock
        self._entries: dict[str, _Entry[T]] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> T | None:
        """The cached value, counting one use; ``None`` when absent or past a bound."""
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        if next(entry.uses) > self._max_uses or self._clock() >= entry.deadline:
            self.discard(key_id)
            return None
        return entry.value

    def put(self, key_id: str, value: T) -> None:
        entry = _Entry(value, self._clock() + self._limits.max_age_seconds)
        with self._lock:
            self._entries.pop(key_id, None)
            while len(self._entries) >= self._limits.max_entries:
                # Oldest insertion first: dicts keep insertion order.
                del self._entries[next(iter(self._entries))]
            self._entries[key_id] = entry

    def discard(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._entries
