"""Budgets on what a caller can make the vault do: searches, denials, and their audit writes.

A vault wired as the app wires it, with a policy of its own (small budgets)
and an injected monotonic clock for the buckets and the alarm window. The
store counts its write transactions per thread, so a test can tell how many
durable writes a request cost.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clocks import ManualTime

from vault.audit.log import AuditLog
from vault.audit.records import AuditRecord
from vault.bootstrap.app import PolicyHolder, load_index_keys
from vault.domain.authorization import SUPPRESSED_DENIALS
from vault.domain.enumeration import EnumerationWatch
from vault.domain.model import GetRequest
from vault.domain.rate_limit import RateLimiter
from vault.domain.vault import Vault
from vault.errors import NotFound, PermissionDenied, ResourceExhausted, Unavailable
from vault.fields import PaymentCard, PhoneNumber
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.storage import migrate
from vault.storage.database import Store, Tx
from vault.storage.hot_reads import HotReads

NOW = datetime(2026, 11, 30, tzinfo=UTC)
PHONE = PhoneNumber("+372 5123 4567")
CARD = PaymentCard("4111 1111 1111 1111", 12, 2030, "Jane Doe")

POLICY = """
[[callers.registration.grants]]
actions = ["put", "get", "find"]
field_types = ["phone", "email"]
views = ["masked", "token"]

[[callers.checkout.grants]]
actions = ["put"]
field_types = ["card"]

[[callers.dedupe.grants]]
actions = ["find"]
field_types = ["phone"]
answers = "subject_ids"

[[callers.privacy-desk.grants]]
actions = ["get"]
field_types = ["*"]
views = ["plaintext"]
purposes = ["dsar"]

[[callers.admin.grants]]
actions = ["admin"]

[limits.default]
search_per_second = 1.0
search_burst = 3
denials_per_second = 1.0
denials_burst = 5

[limits.callers.admin]
denials_burst = 100
"""


class CountingStore(Store):
    """A store that counts its write transactions per thread, and can refuse them."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.writes: Counter[int] = Counter()
        self.refuse_writes = False

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        self.writes[threading.get_ident()] += 1
        if self.refuse_writes:
            raise RuntimeError("the database refuses writes")
        with super().write() as tx:
            yield tx

    def my_writes(self) -> int:
        return self.writes[threading.get_ident()]


@dataclass
class Harness:
    store: CountingStore
    vault: Vault
    audit: AuditLog
    clock: ManualTime[float]

    def events(self) -> list[AuditRecord]:
        return self.audit.events()


@pytest.fixture
def h(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    keyring = tmp_path / "keyring.json"
    create_keyring(keyring)
    (tmp_path / "policy.toml").write_text(POLICY)
    policy = PolicyHolder(tmp_path / "policy.toml")
    store = CountingStore(database_url)
    migrate.upgrade(store)
    provider = LocalKeyProvider(keyring)
    audit = AuditLog(store, lambda: NOW, chain_key=provider, flush_interval=3600)
    clock = ManualTime(100.0)
    vault = Vault(
        store,
        KeyHierarchy(provider),
        load_index_keys(store, provider),
        policy,
        audit,
        clock=lambda: NOW,
        rate_limiter=RateLimiter(lambda: policy().limits, monotonic=clock),
        enumeration=EnumerationWatch(lambda: policy().limits, audit, monotonic=clock),
        hot_reads=HotReads(store.data_url),
    )
    try:
        yield Harness(store, vault, audit, clock)
    finally:
        audit.close()
        vault.close()
        store.dispose()


# -- item 5: one request, one audit write ------------------------------------------------
def test_a_batch_of_100_denied_items_is_one_audit_write(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.audit.flush()
    before = h.store.my_writes()
    results = h.vault.batch_get("admin", [GetRequest("s-1", "phone")] * 100)
    assert h.store.my_writes() - before == 1
    assert all(isinstance(result, PermissionDenied) for result in results)
    denied = [e for e in h.events() if e.outcome == "denied"]
    assert len(denied) == 100
    assert {(e.caller, e.action, e.status_code) for e in denied} == {
        ("admin", "get", "PERMISSION_DENIED")
    }


def test_a_batch_whose_audit_write_fails_answers_nothing(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.audit.flush()
    h.store.refuse_writes = True
    try:
        with pytest.raises(Unavailable):
            h.vault.batch_get(
                "privacy-desk", [GetRequest("s-1", "phone", view="plaintext", purpose="dsar")] * 3
            )
    finally:
        h.store.refuse_writes = False
    assert [e for e in h.events() if e.action == "reveal"] == []


def test_a_flood_of_denials_is_refused_without_an_audit_write_each_and_counted(
    h: Harness,
) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.audit.flush()
    before = h.store.my_writes()
    answers = h.vault.batch_get("registration", [GetRequest("s-1", "phone", "plaintext")] * 20)
    assert [type(a).__name__ for a in answers] == ["PermissionDenied"] * 5 + [
        "ResourceExhausted"
    ] * 15
    exhausted = answers[-1]
    assert isinstance(exhausted, ResourceExhausted)
    assert exhausted.reason == "DENIAL_RATE_LIMITED"
    assert exhausted.retry_after == pytest.approx(1.0)
    assert h.store.my_writes() - before == 1  # the five audited denials, in one write
    h.audit.flush()
    [suppressed] = [e for e in h.events() if e.action == SUPPRESSED_DENIALS]
    assert (suppressed.caller, suppressed.outcome) == ("registration", "suppressed")
    assert suppressed.detail.startswith("count=15: ")
    # The bucket refills: a second later one denial is audited again.
    h.clock.now += 1.0
    with pytest.raises(PermissionDenied):
        h.vault.get_field("registration", "s-1", "phone", "plaintext")


def test_hidden_denials_over_budget_still_answer_exactly_as_a_missing_field(h: Harness) -> None:
    h.vault.put_field("checkout", "s-1", "card.primary", CARD)
    answers = [
        h.vault.batch_get("registration", [GetRequest("s-1", "card.primary")])[0] for _ in range(8)
    ]
    missing = h.vault.batch_get("registration", [GetRequest("s-2", "card.primary")])[0]
    assert all(isinstance(a, NotFound) and a.message == "field not found" for a in answers)
    assert isinstance(missing, NotFound) and missing.message == "field not found"
    audited = [e for e in h.events() if e.action == "get" and e.outcome == "denied"]
    assert len(audited) == 5  # the denial budget; the rest counted
    assert {e.status_code for e in audited} == {"NOT_FOUND"}


# -- item 1: search answers, budget, audit ------------------------------------------------
def test_search_names_subjects_only_where_the_grant_says_so(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.vault.put_field("registration", "s-2", "phone.work", PhoneNumber("0037251234567"))
    assert h.vault.find_subjects("dedupe", PhoneNumber("+37251234567")).subject_ids == (
        "s-1",
        "s-2",
    )
    answer = h.vault.find_subjects("registration", PHONE)
    assert answer.found and answer.subject_ids == ()


def test_every_search_is_audited_and_the_budget_refuses_the_rest(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    assert h.vault.find_subjects("registration", PHONE).found
    assert not h.vault.find_subjects("registration", PhoneNumber("+372 5999 9943")).found
    h.vault.find_subjects("registration", PHONE)
    with pytest.raises(ResourceExhausted) as caught:
        h.vault.find_subjects("registration", PHONE)
    assert caught.value.reason == "SEARCH_RATE_LIMITED"
    assert caught.value.retry_after == pytest.approx(1.0)
    h.clock.now += 1.0
    h.vault.find_subjects("registration", PHONE)
    h.audit.flush()
    searches = [e for e in h.events() if e.action == "find"]
    # Equal searches before one flush are one aggregated record with their count.
    assert [(e.caller, e.outcome, e.detail) for e in searches] == [
        ("registration", "ok", "count=3: field_type=phone result=hit"),
        ("registration", "ok", "field_type=phone result=miss"),
        ("registration", "refused", "count=1: phone search: SEARCH_RATE_LIMITED"),
    ]
    for event in searches:
        assert "5123" not in str(event) and "9943" not in str(event)
