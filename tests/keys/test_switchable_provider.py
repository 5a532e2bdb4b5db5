"""The provider a running server holds: replaced whole when DIR/key-provider changes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from vault.errors import Unavailable
from vault.keys.hierarchy import subject_key_context
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.keys.migrating import MigratingKeyProvider
from vault.keys.provider import KeyProvider
from vault.keys.switchable import SwitchableKeyProvider

CONTEXT = subject_key_context("subject-1", "key-1")


def keyring(path: Path) -> LocalKeyProvider:
    create_keyring(path)
    return LocalKeyProvider(path)


def test_every_call_goes_to_the_provider_it_holds_now(tmp_path: Path) -> None:
    first, second = keyring(tmp_path / "a.json"), keyring(tmp_path / "b.json")
    provider = SwitchableKeyProvider(first)
    key = os.urandom(32)
    before = provider.wrap(key, CONTEXT)
    assert before.kek_id == first.kek_id == provider.kek_id
    provider.switch(MigratingKeyProvider(second, [first]))
    after = provider.wrap(key, CONTEXT)
    assert after.kek_id == second.kek_id == provider.kek_id
    assert provider.unwrap(before, CONTEXT) == provider.unwrap(after, CONTEXT) == key
    assert provider.audit_key() == second.audit_key()
    assert provider.versions() == second.versions()
    provider.switch(second)
    with pytest.raises(Unavailable):
        provider.unwrap(before, CONTEXT)


def test_refresh_switches_only_when_follow_names_a_new_provider(tmp_path: Path) -> None:
    first, second = keyring(tmp_path / "a.json"), keyring(tmp_path / "b.json")
    answers: list[KeyProvider | None] = [None, second, None]
    provider = SwitchableKeyProvider(first, follow=lambda: answers.pop(0))
    assert provider.refresh() is False and provider.inner is first
    assert provider.refresh() is True and provider.inner is second
    assert provider.refresh() is False and provider.inner is second
    assert provider.switches == 1


def test_a_follow_that_fails_keeps_the_old_provider_and_raises(tmp_path: Path) -> None:
    first = keyring(tmp_path / "a.json")

    def fail() -> KeyProvider:
        raise Unavailable("the new provider cannot be reached")

    provider = SwitchableKeyProvider(first, follow=fail)
    with pytest.raises(Unavailable):
        provider.refresh()
    assert provider.inner is first


def test_calls_racing_switches_never_fail(tmp_path: Path) -> None:
    first, second = keyring(tmp_path / "a.json"), keyring(tmp_path / "b.json")
    both = [MigratingKeyProvider(second, [first]), MigratingKeyProvider(first, [second])]
    provider = SwitchableKeyProvider(both[0])
    errors: list[BaseException] = []
    stop = threading.Event()

    def work() -> None:
        key = os.urandom(32)
        while not stop.is_set():
            try:
                assert provider.unwrap(provider.wrap(key, CONTEXT), CONTEXT) == key
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for n in range(300):
        provider.switch(both[n % 2])
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
