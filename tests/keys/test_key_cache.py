"""KeyCache: each bound (entries, age, uses) evicts on its own, under a fake clock."""

from __future__ import annotations

import pytest
from clocks import ManualTime

from vault.keys.cache import CacheLimits, KeyCache


def cache(
    clock: ManualTime[float] | None = None,
    *,
    max_entries: int = 1000,
    max_age_seconds: float = 10_000.0,
    max_uses: int = 10_000,
) -> KeyCache[str]:
    """A cache whose bounds do not bind unless a test asks for one."""
    limits = CacheLimits(max_entries, max_age_seconds, max_uses)
    return KeyCache(limits, clock=clock or ManualTime(1000.0))


def test_put_then_get() -> None:
    c = cache()
    c.put("k1", "value-1")
    assert c.get("k1") == "value-1"
    assert "k1" in c
    assert len(c) == 1


def test_missing_key_is_none() -> None:
    assert cache().get("nope") is None


# -- max_entries ----------------------------------------------------------------------
def test_max_entries_evicts_the_oldest_insertion() -> None:
    c = cache(max_entries=3)
    for key in ("a", "b", "c"):
        c.put(key, key.upper())
    c.get("a")  # a use does not refresh insertion order
    c.put("d", "D")
    assert len(c) == 3
    assert c.get("a") is None
    assert [c.get(k) for k in ("b", "c", "d")] == ["B", "C", "D"]


def test_max_entries_reinsert_moves_to_the_back() -> None:
    c = cache(max_entries=2)
    c.put("a", "A")
    c.put("b", "B")
    c.put("a", "A2")  # re-inserted: now the newest
    c.put("c", "C")
    assert c.get("b") is None
    assert c.get("a") == "A2"
    assert c.get("c") == "C"


def test_max_entries_one() -> None:
    c = cache(max_entries=1)
    c.put("a", "A")
    c.put("b", "B")
    assert c.get("a") is None
    assert c.get("b") == "B"
    assert len(c) == 1


# -- max_age --------------------------------------------------------------------------
def test_max_age_evicts_at_the_deadline() -> None:
    clock = ManualTime(1000.0)
    c = cache(clock, max_age_seconds=60.0)
    c.put("k", "v")
    clock.now = 1059.999
    assert c.get("k") == "v"
    clock.now = 1060.0
    assert c.get("k") is None
    assert "k" not in c  # evicted, not just hidden
    clock.now = 1000.0
    assert c.get("k") is None  # gone for good, even if time went back


def test_max_age_counts_from_insertion_not_from_use() -> None:
    clock = ManualTime(0.0)
    c = cache(clock, max_age_seconds=10.0)
    c.put("k", "v")
    for now in (2.0, 4.0, 6.0, 8.0, 9.5):
        clock.now = now
        assert c.get("k") == "v"
    clock.now = 10.0
    assert c.get("k") is None


def test_max_age_restarts_on_put() -> None:
    clock = ManualTime(0.0)
    c = cache(clock, max_age_seconds=10.0)
    c.put("k", "v")
    clock.now = 8.0
    c.put("k", "v2")
    clock.now = 15.0
    assert c.get("k") == "v2"
    clock.now = 18.0
    assert c.get("k") is None


# -- max_uses -------------------------------------------------------------------------
@pytest.mark.parametrize("max_uses", [1, 3, 5])
def test_max_uses_exactly_then_none(max_uses: int) -> None:
    c = cache(max_uses=max_uses)
    c.put("k", "v")
    assert [c.get("k") for _ in range(max_uses)] == ["v"] * max_uses
    assert c.get("k") is None
    assert "k" not in c


def test_max_uses_is_per_entry() -> None:
    c = cache(max_uses=2)
    c.put("a", "A")
    c.put("b", "B")
    assert c.get("a") == "A"
    assert c.get("a") == "A"
    assert c.get("a") is None
    assert c.get("b") == "B"


def test_max_uses_restarts_on_put() -> None:
    c = cache(max_uses=1)
    c.put("k", "v")
    assert c.get("k") == "v"
    assert c.get("k") is None
    c.put("k", "v")
    assert c.get("k") == "v"


# -- discard / clear ------------------------------------------------------------------
def test_discard() -> None:
    c = cache()
    c.put("a", "A")
    c.put("b", "B")
    c.discard("a")
    c.discard("never-there")
    assert c.get("a") is None
    assert c.get("b") == "B"
    assert len(c) == 1


def test_clear() -> None:
    c = cache()
    for key in "abc":
        c.put(key, key)
    c.clear()
    assert len(c) == 0
    assert all(c.get(key) is None for key in "abc")


# -- limits ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("max_entries", "max_age_seconds", "max_uses"),
    [(0, 1.0, 1), (1, 0.0, 1), (1, -1.0, 1), (1, 1.0, 0)],
)
def test_limits_must_be_positive(max_entries: int, max_age_seconds: float, max_uses: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        CacheLimits(max_entries, max_age_seconds, max_uses)
