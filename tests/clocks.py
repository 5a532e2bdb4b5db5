"""Clocks that move only when a test moves them.

A plain module (like ``pg_databases``) so that tests can name the types; the
``clock`` fixture in ``tests/conftest.py`` hands out one per test.

The code under test takes its time as a callable (``clock=`` for wall time,
``monotonic=`` for intervals), so a test injects ``ManualTime`` and sets or
steps ``now``: nothing sleeps, and every boundary (``59.999`` s against
``60.0`` s) can be hit exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

#: Where wall time starts unless a test says otherwise.
WALL_START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
#: Where monotonic time starts: not zero, so that "never happened" (0.0) is distinct.
MONOTONIC_START = 1000.0

Moment = TypeVar("Moment", datetime, float)


class ManualTime(Generic[Moment]):
    """``clock()`` answers ``clock.now``; the test assigns ``now`` to move it."""

    def __init__(self, now: Moment) -> None:
        self.now = now

    def __call__(self) -> Moment:
        return self.now


class SteppableClock:
    """Wall time and monotonic time that step together.

    Pass ``clock.wall`` where the code asks for ``clock=`` (a ``datetime``) and
    ``clock.monotonic`` where it asks for ``monotonic=`` (seconds); ``advance``
    moves both by the same interval, as real time would.
    """

    def __init__(self, wall: datetime = WALL_START, monotonic: float = MONOTONIC_START) -> None:
        self.wall = ManualTime(wall)
        self.monotonic = ManualTime(monotonic)

    def advance(self, interval: timedelta | float) -> None:
        """Move both clocks forward by ``interval`` (a ``timedelta`` or seconds)."""
        step = interval if isinstance(interval, timedelta) else timedelta(seconds=interval)
        if step < timedelta(0):
            raise ValueError("time only moves forward; assign .now to go back")
        self.wall.now += step
        self.monotonic.now += step.total_seconds()
