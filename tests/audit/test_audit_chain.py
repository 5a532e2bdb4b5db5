"""The hash-chained audit log: every kind of tampering is found, at its position."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from vault.audit import chain
from vault.audit.chain_key import StaticChainKey
from vault.audit.log import REKEY_ACTION, AuditLog
from vault.crypto.hash_chain import GENESIS, chain_hash, unkeyed_hash
from vault.errors import Unavailable
from vault.storage.database import Store
from vault.storage.models import AuditEventRow

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
KEY = bytes(range(32))
CHAIN_KEY = StaticChainKey(KEY)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def audit(store: Store) -> Iterator[AuditLog]:
    log = AuditLog(store, Clock(), chain_key=CHAIN_KEY)
    try:
        yield log
    finally:
        log.close()


def fill(audit: AuditLog, count: int = 6) -> None:
    for index in range(count):
        audit.record(
            "privacy-desk",
            "reveal",
            subject_id=f"s-{index}",
            field="phone",
            view="plaintext",
            purpose="dsar",
        )


def sql(store: Store, statement: str, **params: object) -> None:
    with store.write() as tx:
        tx.data.execute(text(statement), params)


def test_an_untouched_chain_verifies(audit: AuditLog) -> None:
    fill(audit)
    check = audit.verify()
    assert (check.ok, check.events_checked, check.first_bad_position) == (True, 6, -1)


def test_an_empty_log_verifies(audit: AuditLog) -> None:
    assert audit.verify().ok


def test_an_edited_event_is_found_at_its_position(store: Store, audit: AuditLog) -> None:
    fill(audit)
    sql(store, "UPDATE audit_events SET purpose = 'marketing' WHERE sequence = 4")
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 4)
    assert "altered" in check.problem


def test_a_deleted_event_is_found(store: Store, audit: AuditLog) -> None:
    fill(audit)
    sql(store, "DELETE FROM audit_events WHERE sequence = 3")
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 3)


def test_deleting_the_newest_events_is_found(store: Store, audit: AuditLog) -> None:
    fill(audit)
    sql(store, "DELETE FROM audit_events WHERE sequence >= 5")
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 5)
    assert "removed" in check.problem


def test_reordered_events_are_found(store: Store, audit: AuditLog) -> None:
    fill(audit)
    # Swap the contents (and hashes) of events 2 and 3, keeping the sequence numbers.
    sql(store, "UPDATE audit_events SET sequence = 1002 WHERE sequence = 2")
    sql(store, "UPDATE audit_events SET sequence = 2 WHERE sequence = 3")
    sql(store, "UPDATE audit_events SET sequence = 3 WHERE sequence = 1002")
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 2)


def test_an_inserted_event_is_found(store: Store, audit: AuditLog) -> None:
    fill(audit)
    # Make room after event 2 and slip in a forged event that copies event 2's hash fields.
    for sequence in range(6, 2, -1):
        sql(
            store,
            "UPDATE audit_events SET sequence = :new WHERE sequence = :old",
            new=sequence + 1,
            old=sequence,
        )
    sql(
        store,
        "INSERT INTO audit_events (sequence, time, caller, action, subject_id, field, view,"
        " purpose, outcome, status_code, detail, prev_hash, hash)"
        " SELECT 3, time, 'admin', 'reveal', 's-9', 'phone', 'plaintext', 'dsar', outcome,"
        " status_code, detail, hash, hash FROM audit_events WHERE sequence = 2",
    )
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 3)


def test_a_verify_walks_on_over_events_appended_while_it_ran(store: Store, audit: AuditLog) -> None:
    """A live vault appends while `audit verify` reads page by page: the head it reads
    at the end may be past the last event it walked. That is not a removal."""
    fill(audit, 10)
    key = audit.open_chain()
    with store.read() as tx:
        rows, heads = tx.audit, []

        class AppendsDuringTheWalk:
            def __getattr__(self, name: str) -> object:
                return getattr(rows, name)

            def head(self, *, lock: bool = False) -> object:
                heads.append(lock)
                if len(heads) == 2:  # the walk has reached the end: three events commit now
                    fill(audit, 3)
                return rows.head(lock=lock)

        check = chain.verify(AppendsDuringTheWalk(), key)  # type: ignore[arg-type]
    assert (check.ok, check.events_checked) == (True, 13), check
    # A head left past the events (rows removed, head not rewound) is still a finding.
    sql(store, "DELETE FROM audit_events WHERE sequence > 11")
    assert audit.verify().problem == "events after this position were removed"


def test_masked_reads_are_batched_and_chained(store: Store) -> None:
    audit = AuditLog(store, Clock(), chain_key=CHAIN_KEY, flush_interval=60)
    try:
        for index in range(5):
            audit.record_later("registration", "get", subject_id=f"m-{index}", view="masked")
        with store.read() as tx:
            written = tx.data.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
        assert written == 0  # nothing on the hot path yet
        audit.flush()
        events = audit.events()
        assert [e.subject_id for e in events] == [f"m-{i}" for i in range(5)]
        assert audit.verify().ok
    finally:
        audit.close()


def test_repeated_masked_reads_are_one_access_record_with_their_count(store: Store) -> None:
    """Aggregated access records: equal accesses in one flush window are one chained
    event that counts them all (time of the first); any difference is a record of its own."""
    audit = AuditLog(store, Clock(), chain_key=CHAIN_KEY, flush_interval=60, max_buffer=3)
    try:
        for _ in range(1000):  # a hot field: never more than one record waits for it
            audit.record_later(
                "registration", "get", subject_id="hot", field="phone", view="masked"
            )
        assert audit.buffered() == 1
        audit.record_later("registration", "get", subject_id="hot", field="phone", view="token")
        audit.record_later("checkout", "get", subject_id="hot", field="phone", view="masked")
        audit.record_later("registration", "get", subject_id="cold", field="phone", view="masked")
        audit.flush()
        audit.record_later("registration", "get", subject_id="hot", field="phone", view="masked")
        audit.flush()
        events = audit.events()
        assert [(e.caller, e.subject_id, e.view, e.detail) for e in events] == [
            ("registration", "hot", "masked", "count=1000"),
            ("registration", "hot", "token", ""),
            ("checkout", "hot", "masked", ""),
            ("registration", "cold", "masked", ""),
            ("registration", "hot", "masked", ""),  # the next window starts afresh
        ]
        assert events[0].time < events[1].time  # the first access's time
        assert audit.verify().ok
    finally:
        audit.close()


def test_readers_over_the_push_back_limit_wait_for_the_flusher(store: Store) -> None:
    """A reader that finds the buffer at its limit is held until the flusher made room;
    it does not write the backlog itself (every reader doing so made a convoy of stalls)."""
    audit = AuditLog(store, Clock(), chain_key=CHAIN_KEY, flush_interval=60, max_buffer=2)
    writers: list[str] = []
    audit.flush_observers.append(lambda n, s: writers.append(threading.current_thread().name))
    try:
        for index in range(25):  # the limit is 10 x 2: the 20th read waits for a flush
            audit.record_later("registration", "get", subject_id=f"p-{index}", view="masked")
        assert writers and set(writers) == {"audit-flush"}
        assert audit.buffered() < 20
        audit.flush()
        assert [e.subject_id for e in audit.events()] == [f"p-{i}" for i in range(25)]
    finally:
        audit.close()


def test_a_reader_over_the_limit_fails_when_the_backlog_cannot_be_written(store: Store) -> None:
    audit = AuditLog(store, Clock(), chain_key=CHAIN_KEY, flush_interval=60, max_buffer=2)
    try:
        audit.open_chain()
        sql(store, "DROP TABLE audit_events")
        for index in range(19):  # under the limit: buffered, whatever the flusher meets
            audit.record_later("registration", "get", subject_id=f"q-{index}", view="masked")
        with pytest.raises(Unavailable):
            audit.record_later("registration", "get", subject_id="q-19", view="masked")
        assert audit.buffered() == 20  # kept for the next attempt, none lost
    finally:
        audit._stop.set()


def test_the_buffer_is_written_when_the_log_closes(store: Store) -> None:
    audit = AuditLog(store, Clock(), chain_key=CHAIN_KEY, flush_interval=60)
    audit.record_later("registration", "get", subject_id="late", view="masked")
    audit.close()
    assert [e.subject_id for e in AuditLog(store, Clock(), chain_key=CHAIN_KEY).events()] == [
        "late"
    ]


def test_events_stream_out_as_json_lines(store: Store) -> None:
    sink = io.StringIO()
    audit = AuditLog(store, Clock(), chain_key=CHAIN_KEY, sink=sink)
    audit.record(
        "checkout",
        "detokenize",
        subject_id="s-1",
        field="payment_token.stripe",
        view="plaintext",
        purpose="checkout",
    )
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    [chained] = audit.page()
    assert lines == [
        {
            "action": "detokenize",
            "caller": "checkout",
            "detail": "",
            "field": "payment_token.stripe",
            "hash": chained.hash.hex(),  # each line anchors the chain at its event
            "outcome": "ok",
            "purpose": "checkout",
            "sequence": 1,
            "status_code": "OK",
            "subject_id": "s-1",
            "time": "2026-11-22T09:00:01+00:00",
            "view": "plaintext",
        }
    ]


def test_concurrent_appenders_never_fork_the_chain(database_url: str, store: Store) -> None:
    # Two "replicas": separate stores (connection pools) appending at once.
    other = Store(database_url)
    logs = [
        AuditLog(store, Clock(), chain_key=CHAIN_KEY),
        AuditLog(other, Clock(), chain_key=CHAIN_KEY),
    ]
    errors: list[BaseException] = []

    def append(log: AuditLog, name: str) -> None:
        try:
            for index in range(25):
                log.record(name, "reveal", subject_id=f"{name}-{index}")
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [
        threading.Thread(target=append, args=(log, f"replica{n}")) for n, log in enumerate(logs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.dispose()
    assert errors == []
    check = logs[0].verify()
    assert (check.ok, check.events_checked) == (True, 50)


def test_the_call_fails_when_the_audit_log_cannot_be_written(store: Store, audit: AuditLog) -> None:
    sql(store, "DROP TABLE audit_events")
    with pytest.raises(Unavailable):
        audit.record("privacy-desk", "reveal", subject_id="s-1")


# -- the keyed chain: what a database holder can no longer do ---------------------------
def rewrite_chain(store: Store, digest: Callable[[bytes, dict[str, object]], bytes]) -> None:
    """What a database holder does: recompute every prev_hash/hash and the head with
    ``digest``, as the chain's own event documents (sequence, UTC time, columns)."""
    with store.write() as tx:
        rows = tx.data.execute(select(AuditEventRow).order_by(AuditEventRow.sequence)).all()
        prev = GENESIS
        for row in rows:
            moment = row.time if row.time.tzinfo else row.time.replace(tzinfo=UTC)
            document: dict[str, object] = {
                "sequence": row.sequence,
                "time": moment.astimezone(UTC).isoformat(),
                "caller": row.caller,
                "action": row.action,
                "subject_id": row.subject_id,
                "field": row.field,
                "view": row.view,
                "purpose": row.purpose,
                "outcome": row.outcome,
                "status_code": row.status_code,
                "detail": row.detail,
            }
            hashed = digest(prev, document)
            tx.data.execute(
                text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE sequence = :s"),
                {"p": prev, "h": hashed, "s": row.sequence},
            )
            prev = hashed
        tx.data.execute(
            text("UPDATE audit_head SET last_sequence = :n, last_hash = :h"),
            {"n": rows[-1].sequence if rows else 0, "h": prev},
        )


def delete_and_renumber(store: Store, sequence: int) -> None:
    sql(store, "DELETE FROM audit_events WHERE sequence = :s", s=sequence)
    sql(store, "UPDATE audit_events SET sequence = sequence - 1 WHERE sequence > :s", s=sequence)


def test_a_chain_rehashed_with_plain_sha256_after_a_deletion_does_not_verify(
    store: Store, audit: AuditLog
) -> None:
    fill(audit)
    delete_and_renumber(store, 3)
    rewrite_chain(store, unkeyed_hash)
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 1)
    assert "altered" in check.problem


@pytest.mark.parametrize("guess", [bytes(32), b"pii-vault".ljust(32, b"\0"), bytes(range(1, 33))])
def test_a_chain_rehashed_under_a_guessed_key_does_not_verify(
    store: Store, audit: AuditLog, guess: bytes
) -> None:
    fill(audit)
    delete_and_renumber(store, 3)
    rewrite_chain(store, lambda prev, event: chain_hash(guess, prev, event))
    assert (audit.verify().ok, audit.verify().first_bad_position) == (False, 1)


def test_the_same_rewrite_under_the_real_key_would_verify(store: Store, audit: AuditLog) -> None:
    """The rewrite helper is right: only the key stands between it and an intact chain."""
    fill(audit)
    delete_and_renumber(store, 3)
    rewrite_chain(store, lambda prev, event: chain_hash(KEY, prev, event))
    assert audit.verify().ok


def anchors_of(audit: AuditLog) -> dict[int, bytes]:
    return {event.sequence: event.hash for event in audit.page(limit=1000)}


def test_a_cut_tail_with_a_rewound_head_is_found_by_an_anchor_past_the_end(
    store: Store, audit: AuditLog
) -> None:
    fill(audit)
    anchors = anchors_of(audit)
    sql(store, "DELETE FROM audit_events WHERE sequence >= 5")
    sql(
        store,
        "UPDATE audit_head SET last_sequence = 4, last_hash ="
        " (SELECT hash FROM audit_events WHERE sequence = 4)",
    )
    assert audit.verify().ok  # the keyed chain alone cannot see a clean cut
    check = audit.verify({6: anchors[6]})
    assert (check.ok, check.events_checked, check.first_bad_position) == (False, 4, 5)
    assert "removed" in check.problem and "position 6" in check.problem


def test_an_anchor_that_names_another_hash_fails_at_its_position(audit: AuditLog) -> None:
    fill(audit)
    anchors = anchors_of(audit)
    check = audit.verify({2: anchors[2], 4: anchors[5]})
    assert (check.ok, check.first_bad_position, check.anchors_checked) == (False, 4, 1)
    assert "anchor" in check.problem


def test_anchors_that_hold_are_counted(audit: AuditLog) -> None:
    fill(audit)
    check = audit.verify({0: GENESIS, **anchors_of(audit)})
    assert (check.ok, check.anchors_checked) == (True, 7)


class AdoptingKey:
    """A key provider of an installation upgraded from an unkeyed chain."""

    def __init__(self) -> None:
        self.adoptable = True

    def audit_key(self) -> bytes:
        return KEY

    def adopts_unkeyed_audit_chain(self) -> bool:
        return self.adoptable

    def close_unkeyed_audit_chain(self) -> None:
        self.adoptable = False


def make_unkeyed(store: Store) -> None:
    """The database as schema 0005 left it (and 0006 marks it): unkeyed SHA-256 hashes."""
    rewrite_chain(store, unkeyed_hash)
    sql(store, "UPDATE audit_head SET scheme = 'sha256'")


def test_an_unkeyed_chain_is_verified_and_rechained_once_with_an_event(store: Store) -> None:
    old = AuditLog(store, Clock(), chain_key=CHAIN_KEY)
    fill(old)
    make_unkeyed(store)
    source = AdoptingKey()
    upgraded = AuditLog(store, Clock(), chain_key=source)
    try:
        upgraded.open_chain()
        assert not source.adoptable  # adoption is over: the provider said so
        events = upgraded.page(limit=100)
        assert events[-1].record.action == REKEY_ACTION
        assert "re-chained 6 events" in events[-1].record.detail
        assert "verified" in events[-1].record.detail
        check = upgraded.verify()
        assert (check.ok, check.events_checked) == (True, 7)
        fill(upgraded, 1)
        assert upgraded.verify().ok
    finally:
        upgraded.close()


def test_a_broken_unkeyed_chain_is_rechained_with_the_break_on_record(store: Store) -> None:
    old = AuditLog(store, Clock(), chain_key=CHAIN_KEY)
    fill(old)
    make_unkeyed(store)
    sql(store, "UPDATE audit_events SET purpose = 'marketing' WHERE sequence = 4")
    upgraded = AuditLog(store, Clock(), chain_key=AdoptingKey())
    upgraded.open_chain()
    [rekey] = [e for e in upgraded.page(limit=100) if e.record.action == REKEY_ACTION]
    assert "BROKEN at position 4" in rekey.record.detail
    assert upgraded.verify().ok  # keyed from here on; the break is in the record


def test_an_unkeyed_chain_is_refused_once_adoption_is_over(store: Store, audit: AuditLog) -> None:
    """A database holder who rewrites the chain in the old, recomputable form and marks
    the head unkeyed does not get it adopted: the key provider says adoption is over."""
    fill(audit)
    delete_and_renumber(store, 3)
    make_unkeyed(store)
    restarted = AuditLog(store, Clock(), chain_key=CHAIN_KEY)
    check = restarted.verify()
    assert (check.ok, check.first_bad_position) == (False, 1)
    assert "not keyed" in check.problem
    with pytest.raises(Unavailable):
        restarted.record("privacy-desk", "reveal", subject_id="s-1")


def test_adoption_with_no_chain_yet_closes_and_keys_the_first_event(store: Store) -> None:
    source = AdoptingKey()
    audit = AuditLog(store, Clock(), chain_key=source)
    fill(audit, 2)
    assert not source.adoptable
    assert audit.verify().ok
    sql(store, "UPDATE audit_head SET scheme = 'sha256'")
    assert not AuditLog(store, Clock(), chain_key=source).verify().ok
