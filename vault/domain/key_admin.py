"""Master-key rotation, rewrapping and retirement: how long a backup stays dangerous.

A backup taken before a shred still holds the shredded subject's key,
wrapped under the master key version of that day. Rotating makes a new
version current; rewrapping moves every stored subject key and blind-index
key to it (the keys themselves do not change, so no data key and no
ciphertext is touched); once no stored key is wrapped under an old version
any more, that version is retired: its key material is destroyed, and every
backup whose keys it wraps becomes noise. The shred receipt's backup horizon
is the promise that this cycle runs.

Retirement is the irreversible step, so it is guarded twice: the count of
keys still under the version is taken in a write transaction that no key
write can slip past (``hold_key_writes``), and the provider is told to
retire only inside that transaction. Every rotation, rewrap and retirement is
audited; so is every denial.

The cycle runs on a ``RotationSchedule`` (``run_schedule``, called by the
server's maintenance loop with the time of the tick): when the current
version is ``period`` old it is rotated, then every key is rewrapped and the
old versions retired. The state lives in the keyring (when the current
version was made) and in the key store (what is still wrapped under what),
so a tick killed mid-rewrap is simply continued by the next one, on this
replica or another. Replicas and workers share one database, so that is
where they agree: "still due?" is asked again under a lock of the key store
(``lock_key_rotation``) with a fresh view of the keyring, and only one
replica rotates per period. The horizon a shred receipt states is derived
from the same schedule (``RotationSchedule.retirement_bound``); with the
schedule off nothing is promised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from vault.audit.log import AuditLog
from vault.audit.records import AuditAction, AuditOutcome
from vault.crypto.envelope import index_key_context, subject_key_context
from vault.domain.authorization import require
from vault.domain.carried_keys import carried_key_context
from vault.domain.ports import Store
from vault.domain.rate_limit import RateLimiter
from vault.domain.rotation_schedule import DEFAULT_ROTATION_PERIOD as DEFAULT_ROTATION_PERIOD
from vault.domain.rotation_schedule import RETIRE_ALLOWANCE as RETIRE_ALLOWANCE
from vault.domain.rotation_schedule import ROTATION_OFF as ROTATION_OFF
from vault.domain.rotation_schedule import RotationSchedule as RotationSchedule
from vault.domain.rotation_schedule import RotationStatus as RotationStatus
from vault.domain.rotation_schedule import ScheduledRun as ScheduledRun
from vault.domain.rotation_schedule import aware_time, parse_time
from vault.domain.rotation_schedule import last_rotation_of as last_rotation_of
from vault.errors import DataLoss, InvalidArgument, Unavailable, VaultError
from vault.keys.provider import KeyProvider, MasterKeyInfo, MasterKeyState
from vault.policy import Action, Policy

DEFAULT_BATCH = 500
MAX_BATCH = 10_000

# For audit events of a failed rewrap; the transport maps errors the same way.
_STATUS_NAMES: dict[type[VaultError], str] = {Unavailable: "UNAVAILABLE", DataLoss: "DATA_LOSS"}

UNKNOWN = "unknown"

MAINTENANCE_CALLER: Final = "maintenance"
"""The audit caller of scheduled rotations, rewraps and retirements."""


@dataclass(frozen=True)
class KeyVersionStatus:
    """One master key version and how many stored keys it wraps.

    ``state`` is ``current`` (wraps new keys), ``active`` (still unwraps),
    ``retired`` (key material destroyed) or ``unknown``: keys in the store
    wrapped under a version this provider does not hold, which nothing opens.
    """

    kek_id: str
    version: int
    state: str
    uses: int
    created_at: datetime | None


class RewrapJob(Iterator[tuple[int, int]]):
    """Progress of one rewrap as ``(done, total)`` after each batch.

    ``retired`` lists the versions retired at the end, once the iteration is
    exhausted; ``still_used`` the old versions that some key still needed
    (a key written or left behind meanwhile), which a later rewrap retires.
    """

    def __init__(self, steps: Callable[[RewrapJob], Iterator[tuple[int, int]]]) -> None:
        self.retired: list[MasterKeyInfo] = []
        self.still_used: list[int] = []
        self._steps = steps(self)

    def __iter__(self) -> RewrapJob:
        return self

    def __next__(self) -> tuple[int, int]:
        return next(self._steps)


class KeyAdmin:
    """The KeyAdminService use cases; every one needs the ``admin`` action."""

    def __init__(
        self,
        store: Store,
        provider: KeyProvider,
        policy: Callable[[], Policy],
        audit: AuditLog,
        *,
        schedule: RotationSchedule = ROTATION_OFF,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        limiter: RateLimiter | None = None,
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._provider = provider
        self._policy = policy
        self._audit = audit
        self._schedule = schedule
        self._clock = clock

    @property
    def schedule(self) -> RotationSchedule:
        return self._schedule

    def _require(self, caller: str, verb: str) -> None:
        require(
            self._policy(),
            self._audit,
            caller,
            Action.ADMIN,
            audit_action=verb,
            limiter=self._limiter,
        )

    # -- RotateMasterKey ----------------------------------------------------------
    def rotate(self, caller: str) -> MasterKeyInfo:
        """Make a new master key version current. Existing keys stay where they are."""
        self._require(caller, AuditAction.ROTATE)
        info = self._provider.rotate()
        self._audit.record(
            caller,
            AuditAction.ROTATE,
            detail=f"master key {info.kek_id} version {info.version} is current",
        )
        return info

    # -- RewrapKeys -----------------------------------------------------------------
    def rewrap(self, caller: str, batch_size: int = 0) -> RewrapJob:
        """Rewrap every subject, index and carried key under the current version, in batches.

        Checks run now; the work runs as the job is iterated. Each batch is
        one write transaction, so an interrupted rewrap leaves every key
        wrapped under either its old or the current version, never neither;
        running it again continues where it stopped.
        """
        self._require(caller, AuditAction.REWRAP)
        if batch_size < 0 or batch_size > MAX_BATCH:
            raise InvalidArgument("batch_size", f"must be between 0 and {MAX_BATCH} (0: default)")
        size = batch_size or DEFAULT_BATCH
        return RewrapJob(lambda job: self._rewrap_steps(caller, size, job))

    # -- the schedule (maintenance loop) -------------------------------------------------
    def run_schedule(
        self, now: datetime, *, cancelled: Callable[[], bool] = lambda: False
    ) -> ScheduledRun:
        """One tick at ``now``: rotate if due, then finish any rewrap and retirement.

        No policy check: the server runs this itself, as ``maintenance``.
        Resumable by construction: whatever a killed tick left (keys under an
        old version, an old version not yet retired) is what the next tick
        finds to do. ``cancelled`` is asked between batches.
        """
        run = ScheduledRun()
        if not self._schedule.enabled:
            return run
        run.rotated = self._rotate_if_due(now)
        if self._pending_work():
            job = RewrapJob(lambda job: self._rewrap_steps(MAINTENANCE_CALLER, DEFAULT_BATCH, job))
            for done, _total in job:
                run.rewrapped = done
                if cancelled():
                    run.cancelled = True
                    return run
            run.retired, run.still_used = job.retired, job.still_used
        run.overdue = self._overdue(now)
        return run

    def _rotate_if_due(self, now: datetime) -> MasterKeyInfo | None:
        """Rotate when the current version is due, once per period across every replica.

        The check is repeated under the key store's rotation lock, against
        the keyring as it is then: a replica that waited for the lock while
        another rotated finds a fresh version and does nothing.
        """
        if not self._is_due(now):
            return None
        with self._store.write() as tx:
            tx.rotation.lock_key_rotation()
            if not self._is_due(now):
                return None
            info = self._provider.rotate()
        self._audit.record(
            MAINTENANCE_CALLER,
            AuditAction.ROTATE,
            detail=f"scheduled: master key {info.kek_id} version {info.version} is current",
        )
        return info

    def _is_due(self, now: datetime) -> bool:
        due = self._schedule.due_at(last_rotation_of(self._provider), now)
        return due is not None and due <= now

    def _pending_work(self) -> bool:
        """Keys under an old version, or an old version not yet retired."""
        current = self._provider.current_version()
        versions = self._provider.versions()
        if any(v.version < current and v.state != MasterKeyState.RETIRED for v in versions):
            return True
        kek_ids = {v.kek_id for v in versions if v.version == current}
        with self._store.read() as tx:
            return any(tx.rotation.count_keys_to_rewrap(k, current) for k in kek_ids)

    def _overdue(self, now: datetime) -> bool:
        """True once a version is unretired past what the schedule lets a receipt promise.

        The current version must be gone ``period + tick + allowance`` after
        it was made; an older one ``tick + allowance`` after its successor was.
        """
        schedule = self._schedule
        if schedule.period is None:
            return False
        versions = sorted(self._provider.versions(), key=lambda v: v.version)
        current = self._provider.current_version()
        made = {v.version: aware_time(parse_time(v.created_at)) for v in versions}
        for info in versions:
            if info.state == MasterKeyState.RETIRED or info.version > current:
                continue
            if info.version == current:
                created = made[info.version]
                if created is None or now > created + schedule.period + schedule.tick + (
                    schedule.allowance
                ):
                    return True
                continue
            successors = [made[v.version] for v in versions if v.version > info.version]
            replaced = min((t for t in successors if t is not None), default=None)
            if replaced is None or now > replaced + schedule.tick + schedule.allowance:
                return True
        return False

    def rotation_status(self, caller: str, now: datetime | None = None) -> RotationStatus:
        """The schedule, the last rotation, what is still to rewrap and to retire."""
        self._require(caller, AuditAction.KEY_STATUS)
        now = now or self._clock()
        versions = self._provider.versions()
        current = self._provider.current_version()
        last = last_rotation_of(self._provider)
        kek_ids = {v.kek_id for v in versions if v.version == current}
        with self._store.read() as tx:
            to_rewrap = sum(tx.rotation.count_keys_to_rewrap(k, current) for k in kek_ids)
        return RotationStatus(
            enabled=self._schedule.enabled,
            period=self._schedule.period,
            last_rotation=last,
            next_rotation_due=self._schedule.due_at(last, now),
            keys_to_rewrap=to_rewrap,
            versions_pending_retirement=tuple(
                v.version
                for v in versions
                if v.version < current and v.state != MasterKeyState.RETIRED
            ),
            backup_horizon=self._schedule.retirement_bound(last, now),
            overdue=self._overdue(now),
        )

    def _rewrap_steps(self, caller: str, size: int, job: RewrapJob) -> Iterator[tuple[int, int]]:
        current = self._provider.current_version()
        known = {v.version: v for v in self._provider.versions()}
        if current not in known:
            raise Unavailable("the current master key version is not listed by the provider")
        kek_id = known[current].kek_id
        progress = [0]
        try:
            yield from self._rewrap_all(caller, kek_id, current, size, progress)
        except VaultError as error:
            self._audit.record(
                caller,
                AuditAction.REWRAP,
                outcome=AuditOutcome.FAILED,
                status_code=_STATUS_NAMES.get(type(error), "INTERNAL"),
                detail=f"stopped after {progress[0]} keys: {error.message}",
            )
            raise
        self._retire_unused(caller, kek_id, current, job)

    def _rewrap_all(
        self, caller: str, kek_id: str, current: int, size: int, progress: list[int]
    ) -> Iterator[tuple[int, int]]:
        provider = self._provider
        with self._store.read() as tx:
            total = tx.rotation.count_keys_to_rewrap(kek_id, current)
        done = 0
        yield done, total
        after = ""
        while True:
            with self._store.write() as tx:
                subjects = tx.rotation.subject_keys_to_rewrap(kek_id, current, after, size)
                for key in subjects:
                    context = subject_key_context(key.subject_id, key.key_id)
                    plain = provider.unwrap(key.wrapped, context)
                    tx.rotation.rewrap_subject_key(
                        key.key_id, key.wrapped, provider.wrap(plain, context)
                    )
            if not subjects:
                break
            after = subjects[-1].key_id
            done += len(subjects)
            progress[0] = done
            yield done, max(total, done)
        after = ""
        while True:
            with self._store.write() as tx:
                index = tx.rotation.index_keys_to_rewrap(kek_id, current, after, size)
                for material in index:
                    context = index_key_context(material.field_type, material.key_id)
                    plain = provider.unwrap(material.wrapped, context)
                    tx.rotation.rewrap_index_key(
                        material.field_type,
                        material.key_id,
                        material.wrapped,
                        provider.wrap(plain, context),
                    )
            if not index:
                break
            after = index[-1].key_id
            done += len(index)
            progress[0] = done
            yield done, max(total, done)
        with self._store.write() as tx:  # the carried audit-chain key, like an index key
            carried = tx.rotation.carried_keys_to_rewrap(kek_id, current)
            for c in carried:
                context = carried_key_context(c.name, c.key_id)
                new = provider.wrap(provider.unwrap(c.wrapped, context), context)
                tx.rotation.rewrap_carried_key(c.name, c.wrapped, new)
        if carried:
            done += len(carried)
            progress[0] = done
            yield done, max(total, done)
        self._audit.record(
            caller,
            AuditAction.REWRAP,
            detail=f"{done} keys rewrapped under master key {kek_id} version {current}",
        )

    def _retire_unused(self, caller: str, kek_id: str, current: int, job: RewrapJob) -> None:
        """Retire every old version no stored key is wrapped under any more."""
        retired: list[MasterKeyInfo] = []
        with self._store.write() as tx:
            tx.rotation.lock_key_rotation()  # one replica retires; the others see it retired
            tx.rotation.hold_key_writes()
            uses = {
                use.kek_version: use.keys
                for use in tx.rotation.count_keys_by_kek_version()
                if use.kek_id == kek_id
            }
            for info in self._provider.versions():
                if info.state == MasterKeyState.RETIRED or info.version >= current:
                    continue
                if uses.get(info.version, 0):
                    job.still_used.append(info.version)
                    continue
                # Inside the transaction: no key can be written under it meanwhile.
                retired.append(self._provider.retire(info.version))
        job.retired = retired
        for info in retired:
            self._audit.record(
                caller,
                AuditAction.RETIRE,
                detail=f"master key {info.kek_id} version {info.version} retired; "
                "its key material is destroyed",
            )

    # -- GetKeyStatus ----------------------------------------------------------------
    def status(self, caller: str) -> list[KeyVersionStatus]:
        """Every master key version, its state and the stored keys wrapped under it."""
        self._require(caller, AuditAction.KEY_STATUS)
        versions = self._provider.versions()
        current = self._provider.current_version()
        with self._store.read() as tx:
            uses = {
                (u.kek_id, u.kek_version): u.keys for u in tx.rotation.count_keys_by_kek_version()
            }
        answer = [
            KeyVersionStatus(
                info.kek_id,
                info.version,
                MasterKeyState.CURRENT if info.version == current else info.state,
                uses.pop((info.kek_id, info.version), 0),
                parse_time(info.created_at),
            )
            for info in versions
        ]
        answer += [
            KeyVersionStatus(kek_id, version, UNKNOWN, count, None)
            for (kek_id, version), count in sorted(uses.items())
        ]
        return answer
