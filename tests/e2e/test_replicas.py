"""Two replicas on one PostgreSQL: a shred on one is honoured at once by the other.

Two real ``pii-vault serve`` processes share one PostgreSQL database and one
set of keys (keyring, TLS, receipt key: the second data directory is a copy
of the first's key files, as an operator deploys a second replica). Both warm
their key caches by reading the subject, masked and in plaintext, and by
detokenizing its token. The subject is shredded through the first replica;
the second, whose cache still holds the subject's unwrapped keys, must never
serve the subject again, on any of its RPC threads, and must keep serving
everyone else.

Skipped, with the reason, only when PostgreSQL is not reachable.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from pg_databases import drop_postgres_database, new_postgres_database
from pii_vault_client.v1 import vault_pb2 as pb

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PHONE = "+372 5123 6655"
OTHER_PHONE = "+372 5123 4433"
EMAIL = "Replica.Test@Example.COM"
STRIPE_TOKEN = "pm_1Nreplicaf3a9"
OTHER_STRIPE_TOKEN = "pm_1Nothersidef3a9"
# Enough rounds that the server's thread pool hands the calls to several threads,
# each with its own hot-read connection.
ROUNDS = 24

# What a second replica needs from the first's data directory: the same master
# keys, the same PKI and policy, the same receipt signing key.
SHARED_FILES = ("keyring.json", "policy.toml", "receipt-signing.key", "receipt-signing.pub")


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, start_vault_server: type[VaultServer]
) -> Iterator[tuple[VaultServer, VaultServer]]:
    database_url = new_postgres_database()  # skips with the reason if unreachable
    servers: list[VaultServer] = []
    try:
        first_dir = tmp_path_factory.mktemp("replica-a")
        first = start_vault_server(first_dir, database_url=database_url, init=True)
        servers.append(first)
        second_dir = tmp_path_factory.mktemp("replica-b")
        for name in SHARED_FILES:
            shutil.copy2(first_dir / name, second_dir / name)
        shutil.copytree(first_dir / "tls", second_dir / "tls")
        second = start_vault_server(second_dir, database_url=database_url, init=False)
        servers.append(second)
        assert first.port != second.port
        yield first, second
    finally:
        codes = [(server.data_dir.name, server.stop(), server.output) for server in servers]
        drop_postgres_database(database_url)
    for name, code, output in codes:
        assert code == 0, f"replica {name} exited with {code}:\n{output}"


def stripe(token: str) -> pb.FieldValue:
    return pb.FieldValue(payment_token=pb.PaymentToken(provider="stripe", token=token))


def phone(number: str) -> pb.FieldValue:
    return pb.FieldValue(phone=pb.PhoneNumber(number=number))


def phone_of(subject: str) -> str:
    """A mobile number held by ``subject`` alone, so that "is it held?" is about this subject."""
    return f"+372 5{int(uuid.uuid5(uuid.NAMESPACE_URL, subject)) % 10**7:07d}"


def store_subject(server: VaultServer, subject: str, number: str, token: str) -> str:
    """Phone and e-mail by registration, a payment token by checkout; returns the token."""
    registration = server.client("registration")
    for field, value in (("phone", phone(number)), ("email", pb.FieldValue(email=EMAIL))):
        registration.vault.PutField(
            pb.PutFieldRequest(subject_id=subject, field=field, value=value), timeout=10
        )
    return (
        server.client("checkout")
        .vault.PutField(
            pb.PutFieldRequest(
                subject_id=subject, field="payment_token.stripe", value=stripe(token)
            ),
            timeout=10,
        )
        .view.token
    )


def get(
    field: str, subject: str, view: pb.View.ValueType = pb.VIEW_MASKED, purpose: str = ""
) -> pb.GetFieldRequest:
    return pb.GetFieldRequest(subject_id=subject, field=field, view=view, purpose=purpose)


def read_everything(server: VaultServer, subject: str, token: str) -> dict[str, str]:
    """Every read that warms a replica's caches; returns what it saw, in plaintext."""
    desk = server.client("privacy-desk")
    registration = server.client("registration")
    checkout = server.client("checkout")
    seen: dict[str, str] = {}
    for field in ("phone", "email", "payment_token.stripe"):
        desk.vault.GetField(get(field, subject), timeout=10)
        revealed = desk.vault.GetField(get(field, subject, pb.VIEW_PLAINTEXT, "dsar"), timeout=10)
        value = revealed.value
        seen[field] = {
            "phone": value.phone.number,
            "email": value.email,
            "payment_token.stripe": value.payment_token.token,
        }[field]
    registration.vault.GetField(get("phone", subject), timeout=10)
    registration.vault.ListFields(pb.ListFieldsRequest(subject_id=subject), timeout=10)
    exchanged = checkout.vault.Detokenize(
        pb.DetokenizeRequest(token=token, purpose="checkout"), timeout=10
    )
    seen["detokenized"] = exchanged.value.payment_token.token
    return seen


def refused(call: Callable[..., object], request: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    return caught.value.code(), caught.value.details() or ""


SHREDDED = (grpc.StatusCode.FAILED_PRECONDITION, "subject is shredded")


def assert_never_served(server: VaultServer, subject: str, token: str) -> None:
    desk = server.client("privacy-desk")
    registration = server.client("registration")
    checkout = server.client("checkout")
    for field in ("phone", "email", "payment_token.stripe"):
        assert refused(desk.vault.GetField, get(field, subject)) == SHREDDED
        assert refused(registration.vault.GetField, get(field, subject)) == SHREDDED
        assert (
            refused(desk.vault.GetField, get(field, subject, pb.VIEW_PLAINTEXT, "dsar")) == SHREDDED
        )
    for client in (desk, registration):
        assert (
            refused(client.vault.ListFields, pb.ListFieldsRequest(subject_id=subject)) == SHREDDED
        )
    code, _ = refused(
        checkout.vault.Detokenize, pb.DetokenizeRequest(token=token, purpose="checkout")
    )
    assert code is grpc.StatusCode.NOT_FOUND
    batch = desk.vault.BatchGetFields(
        pb.BatchGetFieldsRequest(items=[get("email", subject, pb.VIEW_PLAINTEXT, "dsar")]),
        timeout=10,
    )
    assert batch.results[0].WhichOneof("result") == "error"
    assert batch.results[0].error.message == "subject is shredded"
    found = registration.vault.FindSubjects(
        pb.FindSubjectsRequest(value=phone(phone_of(subject))), timeout=10
    )
    assert not found.found


@pytest.mark.slow
def test_a_shred_on_one_replica_is_honoured_by_the_other_despite_a_warm_cache(
    replicas: tuple[VaultServer, VaultServer],
) -> None:
    first, second = replicas
    subject = f"replica-{uuid.uuid4()}"
    other = f"replica-{uuid.uuid4()}"
    token = store_subject(first, subject, phone_of(subject), STRIPE_TOKEN)
    other_token = store_subject(first, other, OTHER_PHONE, OTHER_STRIPE_TOKEN)

    # Warm both replicas, on many of their threads; both serve the subject.
    expected = {
        "phone": phone_of(subject).replace(" ", ""),
        "email": "Replica.Test@example.com",
        "payment_token.stripe": STRIPE_TOKEN,
        "detokenized": STRIPE_TOKEN,
    }
    for _ in range(ROUNDS // 4):
        for server in (first, second):
            assert read_everything(server, subject, token) == expected
            read_everything(server, other, other_token)

    receipt = (
        first.client("deletion")
        .vault.ShredSubject(
            pb.ShredSubjectRequest(
                subject_id=subject, reason="account closed", request_id=f"replica-{subject}"
            ),
            timeout=30,
        )
        .receipt
    )
    assert receipt.fields_destroyed == 3

    # The second replica never serves the subject again, on any thread; nor does the first.
    for _ in range(ROUNDS):
        assert_never_served(second, subject, token)
    assert_never_served(first, subject, token)

    # Both keep serving everyone else, warm cache and all.
    for server in (second, first):
        seen = read_everything(server, other, other_token)
        assert seen["payment_token.stripe"] == OTHER_STRIPE_TOKEN
        assert seen["detokenized"] == OTHER_STRIPE_TOKEN
        assert seen["phone"] == "+37251234433"

    # The second replica hands out the same receipt for the same request.
    again = (
        second.client("deletion")
        .vault.ShredSubject(
            pb.ShredSubjectRequest(
                subject_id=subject, reason="account closed", request_id=f"replica-{subject}"
            ),
            timeout=30,
        )
        .receipt
    )
    assert (again.payload, again.signature) == (receipt.payload, receipt.signature)


def test_a_replica_refuses_writes_to_a_subject_shredded_on_the_other(
    replicas: tuple[VaultServer, VaultServer],
) -> None:
    first, second = replicas
    subject = f"replica-{uuid.uuid4()}"
    store_subject(second, subject, PHONE, STRIPE_TOKEN)
    first.client("deletion").vault.ShredSubject(
        pb.ShredSubjectRequest(subject_id=subject, reason="account closed", request_id=subject),
        timeout=30,
    )
    code, details = refused(
        second.client("registration").vault.PutField,
        pb.PutFieldRequest(subject_id=subject, field="phone", value=phone(PHONE)),
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert "shredded" in details


def test_the_replicas_share_one_database_and_one_set_of_keys(
    replicas: tuple[VaultServer, VaultServer],
) -> None:
    """The premise of the tests above: what one writes, the other opens."""
    first, second = replicas
    subject = f"replica-{uuid.uuid4()}"
    token = store_subject(second, subject, PHONE, STRIPE_TOKEN)
    seen = read_everything(first, subject, token)
    assert seen["detokenized"] == STRIPE_TOKEN
    assert Path(first.data_dir) != Path(second.data_dir)


def test_three_replicas_started_together_on_a_fresh_database_all_serve(
    tmp_path: Path, start_vault_server: type[VaultServer], run_vault: Callable[..., object]
) -> None:
    """A rolling deploy's first wave: three replicas, one key set, a database nobody migrated."""
    database_url = new_postgres_database()
    source = tmp_path / "source"
    init = run_vault("init", "--data-dir", str(source))
    assert init.returncode == 0  # type: ignore[attr-defined]
    dirs = []
    for name in ("a", "b", "c"):
        replica = tmp_path / name
        replica.mkdir(mode=0o700)
        for shared in SHARED_FILES:
            shutil.copy2(source / shared, replica / shared)
        shutil.copytree(source / "tls", replica / "tls")
        dirs.append(replica)
    servers: list[VaultServer] = []
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            starting = [
                pool.submit(start_vault_server, d, database_url=database_url, init=False)
                for d in dirs
            ]
            servers = [s.result() for s in starting]
        subject = f"rep-{uuid.uuid4()}"
        servers[0].client("registration").vault.PutField(
            pb.PutFieldRequest(subject_id=subject, field="phone", value=phone(PHONE)), timeout=30
        )
        for server in servers:
            answer = server.client("registration").vault.GetField(
                pb.GetFieldRequest(subject_id=subject, field="phone", view=pb.VIEW_MASKED),
                timeout=30,
            )
            assert answer.view.masked.endswith("55")
    finally:
        codes = [(server.stop(), server.output) for server in servers]
        drop_postgres_database(database_url)
    for code, output in codes:
        assert code == 0, output
