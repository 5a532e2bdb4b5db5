"""The master key rotation schedule, and what it lets a shred receipt promise.

A receipt's backup horizon is only a promise if rotation, rewrapping and
retirement keep to a schedule; ``RotationSchedule.retirement_bound`` is the
one place that horizon is derived from (``vault.domain.key_admin`` runs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vault.keys.provider import KeyProvider, MasterKeyInfo

DEFAULT_ROTATION_PERIOD = timedelta(days=30)
RETIRE_ALLOWANCE = timedelta(days=1)
"""How long a scheduled rewrap and retirement may take after the rotation that starts it."""


@dataclass(frozen=True)
class RotationSchedule:
    """How often the master key is rotated, and what that lets a receipt promise.

    ``period`` is the age at which the current version is rotated out (None:
    the schedule is off). ``tick`` is the longest wait between two runs of
    the loop that acts on it, and ``allowance`` how long rewrapping every key
    and retiring the old versions may take after a rotation.
    """

    period: timedelta | None
    tick: timedelta = timedelta(hours=1)
    allowance: timedelta = RETIRE_ALLOWANCE

    def __post_init__(self) -> None:
        if self.period is not None and self.period <= timedelta(0):
            raise ValueError("the rotation period must be positive (None turns rotation off)")
        if self.tick <= timedelta(0) or self.allowance < timedelta(0):
            raise ValueError("the rotation tick must be positive and the allowance not negative")

    @property
    def enabled(self) -> bool:
        return self.period is not None

    def due_at(self, last_rotation: datetime | None, now: datetime) -> datetime | None:
        """When the current version (made at ``last_rotation``) is to be rotated out.

        A version of unknown age is due now. None when the schedule is off.
        """
        if self.period is None:
            return None
        return now if last_rotation is None else last_rotation + self.period

    def retirement_bound(self, last_rotation: datetime | None, now: datetime) -> datetime | None:
        """The latest time by which every version in use at ``now`` is retired.

        The current version is rotated at the first tick after it is due (at
        once if it is overdue), and rewrapped away from and retired within
        ``allowance`` of that; any older version still in use is retired by
        the next tick's rewrap, sooner. So: ``max(due, now) + tick + allowance``.
        None when the schedule is off: nothing will retire them.
        """
        due = self.due_at(last_rotation, now)
        if due is None:
            return None
        return max(due, now) + self.tick + self.allowance

    def describe(self) -> str:
        if self.period is None:
            return "master key rotation is off"
        return (
            f"master key rotated every {_days(self.period)}, rewrapped and retired within "
            f"{_days(self.allowance)}, checked every {self.tick.total_seconds():g}s"
        )


ROTATION_OFF = RotationSchedule(None)


def _days(span: timedelta) -> str:
    days = span / timedelta(days=1)
    return f"{days:g} day{'' if days == 1 else 's'}"


@dataclass(frozen=True)
class RotationStatus:
    """The schedule and where it stands, for GetKeyStatus.

    ``backup_horizon`` is what a shred receipt signed now would promise
    (None when the schedule is off); ``overdue`` is set once a version is
    older than the schedule allows, which means that promise is being missed.
    """

    enabled: bool
    period: timedelta | None
    last_rotation: datetime | None
    next_rotation_due: datetime | None
    keys_to_rewrap: int
    versions_pending_retirement: tuple[int, ...]
    backup_horizon: datetime | None
    overdue: bool


@dataclass
class ScheduledRun:
    """What one tick of the schedule did."""

    rotated: MasterKeyInfo | None = None
    rewrapped: int = 0
    retired: list[MasterKeyInfo] = field(default_factory=list)
    still_used: list[int] = field(default_factory=list)
    cancelled: bool = False
    overdue: bool = False


def last_rotation_of(provider: KeyProvider) -> datetime | None:
    """When the current master key version was made (None if the provider does not say)."""
    current = provider.current_version()
    for info in provider.versions():
        if info.version == current:
            return aware_time(parse_time(info.created_at))
    return None


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def aware_time(moment: datetime | None) -> datetime | None:
    """A keyring time without a zone is UTC (the local keyring writes UTC)."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment
