"""The enumeration alarm, with an injected monotonic clock, writing to a real audit log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from clocks import ManualTime

from vault.audit.chain_key import StaticChainKey
from vault.audit.log import AuditLog
from vault.audit.records import AuditRecord
from vault.domain.enumeration import ENUMERATION_ALARM, EnumerationWatch
from vault.errors import ResourceExhausted
from vault.policy.limits import EnumerationAlarm, RateLimits
from vault.storage.database import Store

WINDOW = 600.0
MASK = "+372 **** **43"


@pytest.fixture
def audit(database_url: str) -> Iterator[AuditLog]:
    store = Store(database_url)
    log = AuditLog(
        store, lambda: datetime(2026, 11, 30, tzinfo=UTC), chain_key=StaticChainKey(b"k" * 32)
    )
    try:
        yield log
    finally:
        log.close()
        store.dispose()


def watch_with(
    audit: AuditLog, clock: ManualTime[float], *, misses: int | None = 50, same_mask: int | None = 5
) -> EnumerationWatch:
    limits = RateLimits(alarm=EnumerationAlarm(WINDOW, misses=misses, same_mask=same_mask))
    return EnumerationWatch(lambda: limits, audit, monotonic=clock)


def digest(number: int) -> bytes:
    return number.to_bytes(32, "big")


def alarms(audit: AuditLog) -> list[AuditRecord]:
    return [e for e in audit.events() if e.outcome == "alarm"]


def test_distinct_misses_sharing_one_mask_sound_the_alarm_and_refuse_the_caller(
    audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualTime(5000.0)
    watch = watch_with(audit, clock)
    for number in range(5):  # up to the threshold: quiet
        watch.check("registration")
        watch.missed("registration", "phone", MASK, digest(number))
    assert alarms(audit) == []
    with caplog.at_level(logging.CRITICAL, logger="vault.alarm"):
        watch.missed("registration", "phone", MASK, digest(5))
    [line] = [r for r in caplog.records if r.name == "vault.alarm"]
    assert line.levelno == logging.CRITICAL and "ENUMERATION ALARM" in line.getMessage()
    assert MASK not in line.getMessage()
    [event] = alarms(audit)
    assert (event.caller, event.action, event.status_code) == (
        "registration",
        "find",
        "RESOURCE_EXHAUSTED",
    )
    assert event.detail.startswith("severity=high: enumeration suspected: 6 missed phone values")
    assert MASK not in event.detail
    with pytest.raises(ResourceExhausted) as caught:
        watch.check("registration")
    assert caught.value.reason == ENUMERATION_ALARM
    assert caught.value.retry_after == pytest.approx(WINDOW)
    watch.check("checkout")  # another caller is not refused
    assert watch.alarms == 1


def test_the_caller_is_refused_until_the_window_passes(audit: AuditLog) -> None:
    clock = ManualTime(5000.0)
    watch = watch_with(audit, clock)
    for number in range(6):
        watch.missed("registration", "phone", MASK, digest(number))
    clock.now += WINDOW - 1
    with pytest.raises(ResourceExhausted) as caught:
        watch.check("registration")
    assert caught.value.retry_after == pytest.approx(1.0)
    clock.now += 1
    watch.check("registration")
    # It starts over: the misses before the alarm are not counted again.
    watch.missed("registration", "phone", MASK, digest(100))
    assert len(alarms(audit)) == 1


def test_the_same_value_again_is_not_a_new_candidate(audit: AuditLog) -> None:
    watch = watch_with(audit, ManualTime(5000.0))
    for _ in range(20):
        watch.missed("registration", "phone", MASK, digest(7))
    watch.check("registration")
    assert alarms(audit) == []


def test_misses_spread_over_masks_are_counted_only_by_the_total(audit: AuditLog) -> None:
    watch = watch_with(audit, ManualTime(5000.0), misses=12, same_mask=5)
    for number in range(12):
        watch.missed("registration", "phone", f"+372 **** **{number:02d}", digest(number))
    watch.check("registration")
    watch.missed("registration", "email", "j***@example.com", digest(99))
    [event] = alarms(audit)
    assert "13 missed searches" in event.detail
    with pytest.raises(ResourceExhausted):
        watch.check("registration")


def test_misses_older_than_the_window_are_forgotten(audit: AuditLog) -> None:
    clock = ManualTime(5000.0)
    watch = watch_with(audit, clock)
    for number in range(5):
        watch.missed("registration", "phone", MASK, digest(number))
        clock.now += WINDOW / 5  # each falls out of the window before the sixth arrives
    watch.missed("registration", "phone", MASK, digest(5))
    watch.check("registration")
    assert alarms(audit) == []


def test_without_an_alarm_in_the_limits_nothing_is_counted(audit: AuditLog) -> None:
    watch = EnumerationWatch(RateLimits, audit, monotonic=ManualTime(5000.0))
    for number in range(1000):
        watch.missed("registration", "phone", MASK, digest(number))
    watch.check("registration")
    assert alarms(audit) == []
