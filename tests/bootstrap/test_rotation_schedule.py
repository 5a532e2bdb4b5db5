"""The master-key rotation schedule the maintenance loop runs, on SQLite and PostgreSQL.

Every clock is injected: the keyring dates its versions with the same movable
clock the loop's ticks are given, so a month passes without sleeping. What
must hold: a tick rotates only when the current version is due, then rewraps
every key and retires the old version; a tick stopped midway is finished by
the next one, on any replica; two replicas ticking at once rotate once; the
horizon a receipt states is ``max(due, now) + tick + allowance``; and the
status shows where it all stands.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clocks import ManualTime

from vault.audit.log import AuditLog
from vault.bootstrap.app import (
    PolicyHolder,
    backup_horizon_for,
    load_index_keys,
    rotation_schedule_for,
)
from vault.bootstrap.maintenance import Maintenance
from vault.config import Settings, from_env
from vault.domain.key_admin import (
    MAINTENANCE_CALLER,
    ROTATION_OFF,
    KeyAdmin,
    RotationSchedule,
    ScheduledRun,
)
from vault.domain.retention import RetentionReport, RetentionRules
from vault.domain.vault import Vault
from vault.fields import FieldType, PhoneNumber
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.policy import DEFAULT_POLICY_TOML
from vault.storage import migrate
from vault.storage.database import Store
from vault.storage.hot_reads import HotReads

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
SCHEDULE = RotationSchedule(timedelta(days=30), tick=HOUR, allowance=DAY)
INDEX_KEYS = len(FieldType)


@dataclass
class Replica:
    store: Store
    provider: LocalKeyProvider
    vault: Vault
    audit: AuditLog
    admin: KeyAdmin

    def close(self) -> None:
        self.vault.close()
        self.store.dispose()


@pytest.fixture
def clock() -> ManualTime[datetime]:
    return ManualTime(START)


@pytest.fixture
def replicas(
    database_url: str, tmp_path: Path, clock: ManualTime[datetime]
) -> Iterator[Callable[..., Replica]]:
    """``replicas(schedule)``: one more replica over the same store and keyring."""
    keyring = tmp_path / "keyring.json"
    create_keyring(keyring, now=START)
    policy_path = tmp_path / "policy.toml"
    policy_path.write_text(DEFAULT_POLICY_TOML)
    made: list[Replica] = []

    def make(schedule: RotationSchedule = SCHEDULE) -> Replica:
        store = Store(database_url)
        migrate.upgrade(store)
        provider = LocalKeyProvider(keyring, clock=clock)
        indexer = load_index_keys(store, provider)
        audit = AuditLog(store, clock, chain_key=provider)
        policy = PolicyHolder(policy_path)
        vault = Vault(
            store,
            KeyHierarchy(provider),
            indexer,
            policy,
            audit,
            clock=clock,
            hot_reads=HotReads(store.data_url),
        )
        admin = KeyAdmin(store, provider, policy, audit, schedule=schedule, clock=clock)
        replica = Replica(store, provider, vault, audit, admin)
        made.append(replica)
        return replica

    yield make
    for replica in made:
        replica.close()


def put_subjects(replica: Replica, count: int) -> None:
    for n in range(count):
        replica.vault.put_field(
            "registration", f"s-{n}", "phone", PhoneNumber(f"+372 5{n:03d} 4567")
        )


def states(replica: Replica) -> list[tuple[int, str, int]]:
    return [(s.version, s.state, s.uses) for s in replica.admin.status("admin")]


def audited(replica: Replica, action: str) -> list[tuple[str, str, str]]:
    return [(e.caller, e.action, e.outcome) for e in replica.audit.events() if e.action == action]


# -- the arithmetic -----------------------------------------------------------------------------
def test_the_horizon_is_the_due_date_plus_one_tick_plus_the_allowance() -> None:
    # A version made on START is due on START + 30 days; the loop acts within a tick of
    # that, and rewraps and retires within the allowance.
    assert SCHEDULE.retirement_bound(START, START + DAY) == START + timedelta(days=31) + HOUR
    assert SCHEDULE.due_at(START, START) == START + timedelta(days=30)
    # Overdue (an installation 45 days old): the next tick rotates, so: now + tick + allowance.
    late = START + timedelta(days=45)
    assert SCHEDULE.retirement_bound(START, late) == late + HOUR + DAY
    # A version of unknown age is due now.
    assert SCHEDULE.retirement_bound(None, START) == START + HOUR + DAY
    # Off: nothing retires it, nothing is promised.
    assert ROTATION_OFF.retirement_bound(START, START) is None
    assert ROTATION_OFF.due_at(START, START) is None


def test_the_schedule_follows_the_settings_and_is_off_when_the_loop_is() -> None:
    on = rotation_schedule_for(Settings(data_dir=Path("d")))
    assert (on.period, on.tick, on.allowance) == (timedelta(days=30), HOUR, DAY)
    assert rotation_schedule_for(Settings(data_dir=Path("d"), rotation_days=0)) == ROTATION_OFF
    assert rotation_schedule_for(Settings(data_dir=Path("d"), retention_interval=0)) == ROTATION_OFF
    for off in ("0", "off", "OFF", "never"):
        assert from_env({}, {"VAULT_ROTATION_DAYS": off}).rotation_days == 0
    assert from_env({}, {"VAULT_ROTATION_DAYS": "7"}).rotation_days == 7
    with pytest.raises(ValueError, match="VAULT_ROTATION_DAYS"):
        rotation_schedule_for(Settings(data_dir=Path("d"), rotation_days=-1))


def test_a_receipt_horizon_is_read_from_the_keyring_as_it_is_at_the_shred(
    tmp_path: Path, clock: ManualTime[datetime]
) -> None:
    keyring = tmp_path / "keyring.json"
    create_keyring(keyring, now=START)
    provider = LocalKeyProvider(keyring, clock=clock)
    horizon = backup_horizon_for(provider, SCHEDULE)
    assert horizon(START + DAY) == START + timedelta(days=31) + HOUR
    clock.now = START + timedelta(days=10)
    provider.rotate()  # an operator rotated early: the new version's age counts
    assert horizon(clock.now) == clock.now + timedelta(days=31) + HOUR
    assert backup_horizon_for(provider, ROTATION_OFF)(clock.now) is None


# -- the loop -------------------------------------------------------------------------------
def test_a_tick_rotates_only_when_due_then_rewraps_every_key_and_retires_the_old_version(
    replicas: Callable[..., Replica], clock: ManualTime[datetime]
) -> None:
    replica = replicas()
    put_subjects(replica, 3)
    keys = 3 + INDEX_KEYS

    clock.now = START + timedelta(days=30) - HOUR
    assert replica.admin.run_schedule(clock.now) == ScheduledRun()
    assert states(replica) == [(1, "current", keys)]

    clock.now = START + timedelta(days=30)
    run = replica.admin.run_schedule(clock.now)
    assert run.rotated is not None and run.rotated.version == 2
    assert run.rewrapped == keys
    assert [info.version for info in run.retired] == [1]
    assert not run.overdue
    assert states(replica) == [(1, "retired", 0), (2, "current", keys)]
    for action in ("rotate", "rewrap", "retire"):
        assert audited(replica, action) == [(MAINTENANCE_CALLER, action, "ok")]
    for n in range(3):
        read = replica.vault.get_field("privacy-desk", f"s-{n}", "phone", "plaintext", "dsar")
        assert read.value == PhoneNumber(f"+3725{n:03d}4567")

    # The next tick finds nothing to do until the new version is due in turn.
    clock.now += HOUR
    assert replica.admin.run_schedule(clock.now) == ScheduledRun()
    status = replica.admin.rotation_status("admin", clock.now)
    assert status.last_rotation == START + timedelta(days=30)
    assert status.next_rotation_due == START + timedelta(days=60)


def test_a_tick_stopped_midway_is_finished_by_the_next_tick_of_another_replica(
    replicas: Callable[..., Replica], clock: ManualTime[datetime]
) -> None:
    first = replicas()
    put_subjects(first, 3)
    clock.now = START + timedelta(days=31)
    stopped = first.admin.run_schedule(clock.now, cancelled=lambda: True)  # killed mid-tick
    assert stopped.rotated is not None and stopped.cancelled and not stopped.retired
    status = first.admin.rotation_status("admin", clock.now)
    assert status.keys_to_rewrap == 3 + INDEX_KEYS
    assert status.versions_pending_retirement == (1,)

    clock.now += HOUR
    later = replicas()  # a replica that starts later sees the state in keyring and store
    resumed = later.admin.run_schedule(clock.now)
    assert resumed.rotated is None  # the version made an hour ago is not due
    assert [info.version for info in resumed.retired] == [1]
    assert states(later) == [(1, "retired", 0), (2, "current", 3 + INDEX_KEYS)]


def test_two_replicas_ticking_at_once_rotate_once(
    replicas: Callable[..., Replica], clock: ManualTime[datetime]
) -> None:
    both = [replicas(), replicas()]
    put_subjects(both[0], 2)
    clock.now = START + timedelta(days=30)
    barrier = threading.Barrier(2)
    runs: list[ScheduledRun] = []
    errors: list[BaseException] = []

    def tick(replica: Replica) -> None:
        barrier.wait()
        try:
            runs.append(replica.admin.run_schedule(clock.now))
        except BaseException as error:  # reported below, not swallowed
            errors.append(error)

    threads = [threading.Thread(target=tick, args=(replica,)) for replica in both]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(run.rotated is not None for run in runs) == [False, True]
    assert [v.version for v in both[0].provider.versions()] == [1, 2]
    assert states(both[1]) == [(1, "retired", 0), (2, "current", 2 + INDEX_KEYS)]
    assert [c for c, _, _ in audited(both[0], "rotate")] == [MAINTENANCE_CALLER]


def test_the_status_shows_the_schedule_and_a_loop_that_fell_behind(
    replicas: Callable[..., Replica], clock: ManualTime[datetime]
) -> None:
    replica = replicas()
    put_subjects(replica, 2)
    clock.now = START + timedelta(days=3)
    replica.admin.rotate("admin")  # by hand, and no rewrap yet
    status = replica.admin.rotation_status("admin", clock.now)
    assert status.enabled and status.period == timedelta(days=30)
    assert status.last_rotation == clock.now
    assert status.next_rotation_due == clock.now + timedelta(days=30)
    assert status.keys_to_rewrap == 2 + INDEX_KEYS
    assert status.versions_pending_retirement == (1,)
    assert status.backup_horizon == clock.now + timedelta(days=31) + HOUR
    assert not status.overdue
    # Version 1 should be gone a tick and the allowance after version 2 was made.
    late = clock.now + HOUR + DAY + timedelta(seconds=1)
    assert replica.admin.rotation_status("admin", late).overdue

    off = replicas(ROTATION_OFF).admin.rotation_status("admin", clock.now)
    assert not off.enabled and off.period is None and off.next_rotation_due is None
    assert off.backup_horizon is None and not off.overdue
    assert off.versions_pending_retirement == (1,)  # progress is still shown


def test_with_the_schedule_off_a_tick_never_rotates(
    replicas: Callable[..., Replica], clock: ManualTime[datetime]
) -> None:
    replica = replicas(ROTATION_OFF)
    put_subjects(replica, 1)
    clock.now = START + timedelta(days=400)
    assert replica.admin.run_schedule(clock.now) == ScheduledRun()
    assert states(replica) == [(1, "current", 1 + INDEX_KEYS)]


# -- the thread's run ----------------------------------------------------------------------
class RecordingRotation:
    def __init__(self, error: Exception | None = None) -> None:
        self.ticks: list[datetime] = []
        self.error = error

    def run_schedule(self, now: datetime, *, cancelled: Callable[[], bool]) -> ScheduledRun:
        self.ticks.append(now)
        if self.error is not None:
            raise self.error
        return ScheduledRun()


class IdleSweeper:
    rules = RetentionRules()

    def run(self, *, cancelled: Callable[[], bool]) -> RetentionReport:
        return RetentionReport()


class IdleStore:
    def checkpoint(self) -> None: ...

    def vacuum_keys(self) -> None: ...


def test_a_run_gives_the_rotation_its_time_and_survives_its_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rotation = RecordingRotation()
    clock = ManualTime(START)
    loop = Maintenance(
        IdleSweeper(),  # type: ignore[arg-type]
        IdleStore(),  # type: ignore[arg-type]
        3600,
        rotation=rotation,
        clock=clock,
    )
    loop.run_once()
    loop.run_once(START + DAY)
    assert rotation.ticks == [START, START + DAY]

    failing = RecordingRotation(RuntimeError("secret +37251234567"))
    loop = Maintenance(
        IdleSweeper(),  # type: ignore[arg-type]
        IdleStore(),  # type: ignore[arg-type]
        3600,
        rotation=failing,
        clock=clock,
    )
    with caplog.at_level(logging.INFO):
        loop.run_once()
    assert loop.runs == 1
    assert "key rotation failed (RuntimeError)" in caplog.text
    assert "37251234567" not in caplog.text
