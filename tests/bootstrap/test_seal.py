"""The sealed state: the watcher seals on a failed provider check and unseals by itself."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from grpc_health.v1 import health_pb2

from vault.bootstrap.seal import (
    DeferredIndexer,
    Seal,
    SealWatcher,
    open_keys,
    start_sealed_if_unusable,
)
from vault.crypto.blind_index import BlindIndexer
from vault.crypto.envelope import FieldCipher
from vault.errors import Unavailable
from vault.keys.deferred import DeferredKeyProvider
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import KeyringError, LocalKeyProvider, create_keyring
from vault.keys.provider import KeyProvider

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
NAMES = ("", "vault.v1.VaultService")
SECRET = "+37251234567"


class FakeProvider:
    """``check`` raises ``error`` when one is set; ``reload`` counts (and may fail)."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.reload_error: Exception | None = None
        self.checks = 0
        self.reloads = 0

    def check(self) -> None:
        self.checks += 1
        if self.error is not None:
            raise self.error

    def reload(self) -> None:
        self.reloads += 1
        if self.reload_error is not None:
            raise self.reload_error


class FakeHealth:
    def __init__(self) -> None:
        self.status: dict[str, object] = {}

    def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        self.status[service] = status


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def warm(keys: KeyHierarchy) -> None:
    """Put one unwrapped subject key and one data key in the caches."""
    keys.subject_keys.put("sk-1", AESGCM(bytes(32)))
    keys.data_keys.put("dek-1", FieldCipher(bytes(32), "subject", "phone", "dek-1"))


def watcher_for(
    provider: FakeProvider, clock: Callable[[], float] = time.monotonic, interval: float = 1.0
) -> tuple[SealWatcher, KeyHierarchy, FakeHealth]:
    keys = KeyHierarchy(provider)  # type: ignore[arg-type]
    health = FakeHealth()
    watcher = SealWatcher(keys, Seal(), interval=interval, health=health, clock=clock)
    watcher.serve_health(health, NAMES)
    return watcher, keys, health


def test_a_healthy_provider_keeps_it_unsealed_and_serving() -> None:
    provider = FakeProvider()
    watcher, keys, health = watcher_for(provider)
    warm(keys)
    assert watcher.check_once() is False
    assert not watcher.seal.sealed
    assert health.status == dict.fromkeys(NAMES, SERVING)
    assert len(keys.subject_keys) == 1 and len(keys.data_keys) == 1
    assert provider.reloads == 0  # no reload while nothing was wrong


def test_a_failed_check_seals_purges_the_caches_and_says_not_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = FakeProvider()
    watcher, keys, health = watcher_for(provider)
    warm(keys)
    provider.error = Unavailable("the master keyring /d/keyring.json is not reachable")
    with caplog.at_level(logging.INFO, logger="vault.seal"):
        assert watcher.check_once() is True
    assert watcher.seal.sealed
    assert watcher.seal.reason == "the master keyring /d/keyring.json is not reachable"
    assert len(keys.subject_keys) == 0 and len(keys.data_keys) == 0
    assert health.status == dict.fromkeys(NAMES, NOT_SERVING)
    assert [r.getMessage() for r in caplog.records] == [
        "vault sealed: the master keyring /d/keyring.json is not reachable"
    ]


def test_while_sealed_each_check_purges_again_but_logs_nothing_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = FakeProvider()
    watcher, keys, _ = watcher_for(provider)
    provider.error = Unavailable("down")
    with caplog.at_level(logging.INFO, logger="vault.seal"):
        for _ in range(5):
            warm(keys)  # a call that was already past the seal re-warms a cache
            assert watcher.check_once() is True
            assert len(keys.subject_keys) == 0 and len(keys.data_keys) == 0
    assert len(caplog.records) == 1


def test_recovery_reloads_unseals_and_serves(caplog: pytest.LogCaptureFixture) -> None:
    provider, clock = FakeProvider(), FakeClock()
    watcher, _, health = watcher_for(provider, clock)
    provider.error = Unavailable("down")
    watcher.check_once()
    clock.now += 4.5
    provider.error = None
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vault.seal"):
        assert watcher.check_once() is False
        assert watcher.check_once() is False
    assert not watcher.seal.sealed and watcher.seal.reason == ""
    assert provider.reloads == 1  # once, on the way out of the sealed state
    assert health.status == dict.fromkeys(NAMES, SERVING)
    assert [r.getMessage() for r in caplog.records] == ["vault unsealed (sealed for 4.5s)"]


def test_a_failed_reload_keeps_it_sealed() -> None:
    provider = FakeProvider()
    watcher, _, health = watcher_for(provider)
    provider.error = Unavailable("down")
    watcher.check_once()
    provider.error = None
    provider.reload_error = KeyringError("keyring /d/keyring.json is malformed (ValueError)")
    assert watcher.check_once() is True
    assert watcher.seal.reason == "keyring /d/keyring.json is malformed (ValueError)"
    assert health.status == dict.fromkeys(NAMES, NOT_SERVING)
    provider.reload_error = None
    assert watcher.check_once() is False


def test_any_exception_seals_and_is_logged_by_type_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = FakeProvider()
    watcher, _, _ = watcher_for(provider)
    provider.error = RuntimeError(f"driver said {SECRET}")
    with caplog.at_level(logging.INFO, logger="vault.seal"):
        assert watcher.check_once() is True
    assert watcher.seal.reason == "RuntimeError"
    assert SECRET not in caplog.text
    assert "vault sealed: RuntimeError" in caplog.text


def test_start_sealed_if_unusable_seals_before_health_is_attached() -> None:
    provider = FakeProvider()
    provider.error = Unavailable("down")
    keys = KeyHierarchy(provider)  # type: ignore[arg-type]
    watcher = start_sealed_if_unusable(keys, interval=1.0)
    assert watcher.seal.sealed and not watcher.is_alive()
    health = FakeHealth()
    watcher.serve_health(health, NAMES)
    assert health.status == dict.fromkeys(NAMES, NOT_SERVING)


def test_the_thread_seals_and_unseals_on_its_own_and_stops() -> None:
    provider = FakeProvider()
    watcher, _, health = watcher_for(provider, interval=0.01)
    watcher.start()
    try:
        provider.error = Unavailable("down")
        wait_for(lambda: health.status.get("") == NOT_SERVING)
        assert watcher.seal.sealed
        provider.error = None
        wait_for(lambda: health.status.get("") == SERVING)
        assert not watcher.seal.sealed
    finally:
        watcher.stop(timeout=5)
    assert not watcher.is_alive()
    checks = provider.checks
    time.sleep(0.05)
    assert provider.checks == checks  # stopped means stopped


def test_the_interval_must_be_positive() -> None:
    keys = KeyHierarchy(FakeProvider())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        SealWatcher(keys, Seal(), interval=0)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# -- starting with a keyring that is not there -------------------------------------


def test_open_keys_without_a_keyring_defers_until_it_appears(tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.json"
    loads: list[KeyProvider] = []

    def load_indexer(provider: KeyProvider) -> BlindIndexer:
        provider.check()
        loads.append(provider)
        return BlindIndexer({"phone": bytes(32)})

    provider, indexer = open_keys(f"local://{keyring}", load_indexer)
    assert isinstance(provider, DeferredKeyProvider) and isinstance(indexer, DeferredIndexer)
    with pytest.raises(Unavailable, match="cannot be read"):
        provider.check()
    with pytest.raises(Unavailable):
        provider.wrap(bytes(32), b"ctx")
    with pytest.raises(Unavailable):
        indexer.digest("phone", b"+37251234567")
    assert not provider.opened and loads == []

    create_keyring(keyring)
    provider.check()
    assert provider.opened
    provider.reload()
    wrapped = provider.wrap(bytes(32), b"ctx")
    assert provider.unwrap(wrapped, b"ctx") == bytes(32)
    digest = indexer.digest("phone", b"+37251234567")
    assert digest == BlindIndexer({"phone": bytes(32)}).digest("phone", b"+37251234567")
    indexer.mac("phone", b"m")
    assert len(loads) == 1  # loaded once, then kept


def test_open_keys_with_a_keyring_opens_it_at_once(tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.json"
    create_keyring(keyring)
    provider, indexer = open_keys(f"local://{keyring}", lambda p: BlindIndexer({}))
    assert isinstance(provider, LocalKeyProvider)
    assert type(indexer) is BlindIndexer


def test_open_keys_still_refuses_an_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unknown key provider"):
        open_keys("kms://nowhere", lambda p: BlindIndexer({}))
