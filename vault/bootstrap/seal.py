"""The sealed state: fail closed while the master key cannot be reached.

When the key provider cannot be used (keyring missing, unreadable, unsafe or
malformed; an HSM down) the vault is *sealed*: every data call answers
UNAVAILABLE (the transport's ``rpc`` decorators ask ``Seal.sealed``), health
says NOT_SERVING, and the unwrapped keys in memory are purged so that nothing
can be decrypted from a warm cache. When the provider is usable again the
vault unseals by itself; no restart, no operator step.

Why it lives in ``bootstrap``: it owns a thread, an interval and the health
servicer, which is wiring; what it asks is the provider's own ``check``.

What must hold:

- Sealing is prompt and complete: the flag is set before the caches are
  purged, so no call that starts after the purge can re-warm them, and the
  caches are purged again on every failed check while sealed, which catches a
  call that was already past the flag when it was set.
- It never takes the server down and never spams: every check is guarded,
  and "vault sealed" / "vault unsealed" are logged once per transition.
- No secret reaches the log: a reason is the message of one of our own errors
  (which name paths and faults, never key material) or else only the type of
  the exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from grpc_health.v1 import health_pb2

from vault.crypto.blind_index import BlindIndexer
from vault.errors import Unavailable, VaultError
from vault.keys.deferred import DeferredKeyProvider
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import KeyringError
from vault.keys.provider import KeyProvider
from vault.keys.uri import provider_from_uris

log = logging.getLogger("vault.seal")

DEFAULT_INTERVAL = 1.0


class Seal:
    """Whether the vault is sealed now.

    Read on every call, so reading takes no lock (a bool attribute read is
    atomic); the transitions are serialised so that exactly one caller sees
    each change.
    """

    def __init__(self, *, sealed: bool = False) -> None:
        self._sealed = sealed
        self._reason = ""
        self._lock = threading.Lock()

    @property
    def sealed(self) -> bool:
        return self._sealed

    @property
    def reason(self) -> str:
        """Why the vault is sealed (empty when it is not)."""
        return self._reason

    def seal(self, reason: str) -> bool:
        """Seal; returns whether this call changed the state."""
        with self._lock:
            changed = not self._sealed
            self._sealed = True
            self._reason = reason
            return changed

    def unseal(self) -> bool:
        """Unseal; returns whether this call changed the state."""
        with self._lock:
            changed = self._sealed
            self._sealed = False
            self._reason = ""
            return changed


class HealthStatus(Protocol):
    """What the watcher needs of ``grpc_health.v1.health.HealthServicer``."""

    def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None: ...


def reason_of(error: BaseException) -> str:
    """A loggable reason: our own errors' messages, anything else by type only."""
    if isinstance(error, VaultError | KeyringError):
        return str(error)
    return type(error).__name__


class SealWatcher(threading.Thread):
    """Every ``interval`` seconds: ``provider.check()``, then seal or unseal to match.

    ``check_once`` is the whole decision and runs without the thread, which
    is how start-up seals before the first call and how the tests drive it.
    """

    def __init__(
        self,
        keys: KeyHierarchy,
        seal: Seal,
        *,
        provider: KeyProvider | None = None,
        interval: float = DEFAULT_INTERVAL,
        health: HealthStatus | None = None,
        health_names: Iterable[str] = ("",),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("the seal check interval must be positive")
        super().__init__(name="vault-seal-watcher", daemon=True)
        self._keys = keys
        self._provider = provider if provider is not None else keys.provider
        self.seal = seal
        self._interval = interval
        self._health = health
        self._health_names = tuple(health_names)
        self._clock = clock
        self._sealed_at: float | None = None
        self._stop_event = threading.Event()
        self.checks = 0
        self._database_probe: Callable[[], None] | None = None
        self.database_ok = True

    def watch_database(self, probe: Callable[[], None]) -> None:
        """Also ``probe`` the database on every check: readiness, not the seal.

        A database out of reach makes health NOT_SERVING (load balancers move
        away) but does not seal: the unwrapped keys stay, and the calls
        themselves answer UNAVAILABLE until it is back.
        """
        self._database_probe = probe

    def serve_health(self, health: HealthStatus, names: Iterable[str]) -> None:
        """Report through ``health`` from now on, starting with the state as it is."""
        self._health = health
        self._health_names = tuple(names)
        self._set_health()

    def start_watching(self, health: HealthStatus, names: Iterable[str]) -> None:
        """``serve_health``, then start the thread."""
        self.serve_health(health, names)
        self.start()
        log.info("key provider checked every %gs (sealed: %s)", self._interval, self.seal.sealed)

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            self.check_once()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds for it."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def check_once(self) -> bool:
        """Check the provider once and seal or unseal to match; returns ``sealed``."""
        try:
            # A switchable provider follows DIR/key-provider (a key migration).
            refresh = getattr(self._provider, "refresh", None)
            if callable(refresh):
                refresh()
            self._provider.check()
            if self.seal.sealed:
                # The keyring may have been replaced while we were sealed.
                reload = getattr(self._provider, "reload", None)
                if callable(reload):
                    reload()
        except Exception as error:  # fail closed on anything, not only Unavailable
            self._on_failure(reason_of(error))
        else:
            self._on_success()
        finally:
            self.checks += 1
            self._check_database()
        return self.seal.sealed

    def _check_database(self) -> None:
        if self._database_probe is None:
            return
        try:
            self._database_probe()
            ok, reason = True, ""
        except Exception as error:  # a driver error names the host, never a row
            ok, reason = False, type(error).__name__
        if ok != self.database_ok:
            self.database_ok = ok
            self._set_health()
            if ok:
                log.info("database reachable again: ready")
            else:
                log.error("database unreachable (%s): not ready", reason)

    def _on_failure(self, reason: str) -> None:
        changed = self.seal.seal(reason)  # first, so that no new call gets past
        self._keys.subject_keys.clear()
        self._keys.data_keys.clear()
        if changed:
            self._sealed_at = self._clock()
            self._set_health()
            log.error("vault sealed: %s", reason)

    def _on_success(self) -> None:
        if self.seal.unseal():
            self._set_health()
            since = self._sealed_at
            self._sealed_at = None
            if since is None:
                log.info("vault unsealed")
            else:
                log.info("vault unsealed (sealed for %.1fs)", self._clock() - since)

    def _set_health(self) -> None:
        if self._health is None:
            return
        status = (
            health_pb2.HealthCheckResponse.NOT_SERVING
            if self.seal.sealed or not self.database_ok
            else health_pb2.HealthCheckResponse.SERVING
        )
        for name in self._health_names:
            self._health.set(name, status)


class DeferredIndexer(BlindIndexer):
    """Blind indexes whose keys are unwrapped on first use, once the provider opens.

    Stands in when the server starts sealed: the index keys are wrapped by
    the master key, so they cannot be loaded until the provider is usable.
    Until then every use raises ``Unavailable`` (the transport refuses calls
    while sealed anyway); after the first successful load it is a plain
    ``BlindIndexer``.
    """

    __slots__ = ("_load", "_loaded", "_lock")

    def __init__(self, load: Callable[[], BlindIndexer]) -> None:
        super().__init__({})
        self._load = load
        self._loaded: BlindIndexer | None = None
        self._lock = threading.Lock()

    def _indexer(self) -> BlindIndexer:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
                loaded = self._loaded
        return loaded

    def digest(self, field_type: str, normal_form: bytes) -> bytes:
        return self._indexer().digest(field_type, normal_form)

    def mac(self, field_type: str, message: bytes) -> bytes:
        return self._indexer().mac(field_type, message)


def open_keys(
    uri: str | Sequence[str], load_indexer: Callable[[KeyProvider], BlindIndexer]
) -> tuple[KeyProvider, BlindIndexer]:
    """The key provider at ``uri`` (or ``uris``, ``provider_from_uris``) and the blind
    indexer, or stand-ins if it cannot open now.

    A keyring that is missing or unusable at start-up gives a
    ``DeferredKeyProvider`` and a ``DeferredIndexer``, so the server starts
    sealed (the watcher's first check says why) instead of crashing, and
    unseals once the keyring is back. Anything else (an unknown URI scheme, a
    keyring that opens but is not the one that wrapped the index keys) still
    fails the start-up.
    """

    def open_provider() -> KeyProvider:
        try:
            return provider_from_uris([uri] if isinstance(uri, str) else uri)
        except KeyringError as error:
            raise Unavailable(str(error)) from None

    try:
        provider = open_provider()
    except Unavailable:
        deferred = DeferredKeyProvider(open_provider)
        return deferred, DeferredIndexer(lambda: load_indexer(deferred))
    return provider, load_indexer(provider)


def start_sealed_if_unusable(keys: KeyHierarchy, interval: float) -> SealWatcher:
    """A watcher (not yet started) whose seal already reflects one check of the provider.

    Checked before the server starts, so that a server whose keyring is
    unusable never answers SERVING, not even for the first interval.
    """
    watcher = SealWatcher(keys, Seal(), interval=interval)
    watcher.check_once()
    return watcher
