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
write can slip past (``repo.hold_key_writes``), and the provider is told to
retire only inside that transaction. Every rotation, rewrap and retirement is
audited; so is every denial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from vault.audit.log import AuditLog
from vault.crypto.envelope import index_key_context, subject_key_context
from vault.domain.authorization import require
from vault.errors import DataLoss, InvalidArgument, Unavailable, VaultError
from vault.keys.provider import KeyProvider, MasterKeyInfo
from vault.policy import Action, Policy
from vault.storage import repository as repo
from vault.storage.database import Store

DEFAULT_BATCH = 500
MAX_BATCH = 10_000

# For audit events of a failed rewrap; the transport maps errors the same way.
_STATUS_NAMES: dict[type[VaultError], str] = {Unavailable: "UNAVAILABLE", DataLoss: "DATA_LOSS"}

CURRENT = "current"
RETIRED = "retired"
UNKNOWN = "unknown"


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


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class KeyAdmin:
    """The KeyAdminService use cases; every one needs the ``admin`` action."""

    def __init__(
        self,
        store: Store,
        provider: KeyProvider,
        policy: Callable[[], Policy],
        audit: AuditLog,
    ) -> None:
        self._store = store
        self._provider = provider
        self._policy = policy
        self._audit = audit

    def _require(self, caller: str, verb: str) -> None:
        require(self._policy(), self._audit, caller, Action.ADMIN, audit_action=verb)

    # -- RotateMasterKey ----------------------------------------------------------
    def rotate(self, caller: str) -> MasterKeyInfo:
        """Make a new master key version current. Existing keys stay where they are."""
        self._require(caller, "rotate")
        info = self._provider.rotate()
        self._audit.record(
            caller, "rotate", detail=f"master key {info.kek_id} version {info.version} is current"
        )
        return info

    # -- RewrapKeys -----------------------------------------------------------------
    def rewrap(self, caller: str, batch_size: int = 0) -> RewrapJob:
        """Rewrap every subject and index key under the current version, batch by batch.

        Checks run now; the work runs as the job is iterated. Each batch is
        one write transaction, so an interrupted rewrap leaves every key
        wrapped under either its old or the current version, never neither;
        running it again continues where it stopped.
        """
        self._require(caller, "rewrap")
        if batch_size < 0 or batch_size > MAX_BATCH:
            raise InvalidArgument("batch_size", f"must be between 0 and {MAX_BATCH} (0: default)")
        size = batch_size or DEFAULT_BATCH
        return RewrapJob(lambda job: self._rewrap_steps(caller, size, job))

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
                "rewrap",
                outcome="failed",
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
            total = repo.count_keys_to_rewrap(tx.keys, kek_id, current)
        done = 0
        yield done, total
        after = ""
        while True:
            with self._store.write() as tx:
                subjects = repo.subject_keys_to_rewrap(tx.keys, kek_id, current, after, size)
                for key in subjects:
                    context = subject_key_context(key.subject_id, key.key_id)
                    plain = provider.unwrap(key.wrapped, context)
                    repo.rewrap_subject_key(
                        tx.keys, key.key_id, key.wrapped, provider.wrap(plain, context)
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
                index = repo.index_keys_to_rewrap(tx.keys, kek_id, current, after, size)
                for material in index:
                    context = index_key_context(material.field_type, material.key_id)
                    plain = provider.unwrap(material.wrapped, context)
                    repo.rewrap_index_key(
                        tx.keys,
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
        self._audit.record(
            caller,
            "rewrap",
            detail=f"{done} keys rewrapped under master key {kek_id} version {current}",
        )

    def _retire_unused(self, caller: str, kek_id: str, current: int, job: RewrapJob) -> None:
        """Retire every old version no stored key is wrapped under any more."""
        retired: list[MasterKeyInfo] = []
        with self._store.write() as tx:
            repo.hold_key_writes(tx.keys)
            uses = {
                use.kek_version: use.keys
                for use in repo.count_keys_by_kek_version(tx.keys)
                if use.kek_id == kek_id
            }
            for info in self._provider.versions():
                if info.state == RETIRED or info.version >= current:
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
                "retire",
                detail=f"master key {info.kek_id} version {info.version} retired; "
                "its key material is destroyed",
            )

    # -- GetKeyStatus ----------------------------------------------------------------
    def status(self, caller: str) -> list[KeyVersionStatus]:
        """Every master key version, its state and the stored keys wrapped under it."""
        self._require(caller, "key-status")
        versions = self._provider.versions()
        current = self._provider.current_version()
        with self._store.read() as tx:
            uses = {
                (u.kek_id, u.kek_version): u.keys for u in repo.count_keys_by_kek_version(tx.keys)
            }
        answer = [
            KeyVersionStatus(
                info.kek_id,
                info.version,
                CURRENT if info.version == current else info.state,
                uses.pop((info.kek_id, info.version), 0),
                _parse_time(info.created_at),
            )
            for info in versions
        ]
        answer += [
            KeyVersionStatus(kek_id, version, UNKNOWN, count, None)
            for (kek_id, version), count in sorted(uses.items())
        ]
        return answer
