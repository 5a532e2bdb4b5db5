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
        self._clock = clock
        self._entries: dict[str, _Entry[T]] = {}
        self._lock = threading.Lock()
        # Lookups that found nothing usable (metrics); counted on the miss path only,
        # so a hit costs nothing more. Unlocked: a lost increment under a race is fine.
        self._misses = [0]
        self.get: Callable[[str], T | None] = self._getter()
        """The cached value, counting one use; ``None`` when absent or past a bound."""

    def _getter(self) -> Callable[[str], T | None]:
        # A closure over locals, not a method: attribute lookups are a measurable
        # share of the warm read path.
        lookup = self._entries.get
        max_uses = self._limits.max_uses
        clock = self._clock
        discard = self.discard
        misses = self._misses

        def get(key_id: str) -> T | None:
            entry = lookup(key_id)
            if entry is None:
                misses[0] += 1
                return None
            if next(entry.uses) > max_uses or clock() >= entry.deadline:
                discard(key_id)
                misses[0] += 1
                return None
            return entry.value

        return get

    @property
    def misses(self) -> int:
        return self._misses[0]

    def put(self, key_id: str, value: T) -> None:
        entry = _Entry(value, self._clock() + self._limits.max_age_seconds)
        with self._lock:
            self._entries.pop(key_id, None)
            if len(self._entries) >= self._limits.max_entries:
                self._evict_oldest()
            self._entries[key_id] = entry

    def _evict_oldest(self) -> None:
        """Drop the oldest insertions (dicts keep insertion order), a batch at a time.

        Finding the first live slot of a dict walks the slots freed by earlier
        deletions, so evicting one entry per put would cost O(n) each time;
        evicting 1/64 of the cache at once amortises that walk.
        """
        excess = len(self._entries) - self._limits.max_entries + 1
        count = max(excess, self._limits.max_entries // 64, 1)
        for key_id in list(itertools.islice(self._entries, count)):
            del self._entries[key_id]

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
