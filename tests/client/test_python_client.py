"""pii_vault_client's sync and asyncio clients over real mTLS against the real server.

- typed exceptions: the class and ``reason`` come from the server's ErrorInfo;
- deadlines: each method's default applies (a server that never answers is given up
  on), a client-wide or per-call timeout overrides it;
- retries: a read is retried on UNAVAILABLE (the vault's port refuses, then a proxy to
  it opens), a put without an idempotency key is not, a put with one is.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from openbao import TcpProxy
from pii_vault_client import (
    AsyncVaultClient,
    DeadlineExceeded,
    FailedPrecondition,
    IdempotencyMismatch,
    InvalidArgument,
    LegalHold,
    NotFound,
    PermissionDenied,
    PolicyDenied,
    RateLimited,
    ResourceExhausted,
    RetryPolicy,
    SubjectShredded,
    Unavailable,
    VaultClient,
    VaultError,
)
from pii_vault_client.config import (
    DEFAULT_DEADLINES,
    METHODS,
    Keepalive,
    Kind,
    channel_options,
    service_config,
)
from pii_vault_client.errors import error_class
from pii_vault_client.v1 import vault_pb2 as pb

if TYPE_CHECKING:
    from vault_server import VaultServer

PHONE = pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567"))
OTHER_PHONE = pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 7654"))
# Reconnect at once when the port opens, so a retry meets the server.
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 200),
)
PATIENT = RetryPolicy(max_attempts=5, initial_backoff=1.0, max_backoff=2.0)


def client(server: VaultServer, caller: str, **settings: Any) -> VaultClient:
    return VaultClient.for_caller(server.data_dir, caller, server.target, **settings)


def put(subject: str, field: str = "phone", value: pb.FieldValue = PHONE, key: str = "") -> Any:
    return pb.PutFieldRequest(subject_id=subject, field=field, value=value, idempotency_key=key)


def get(subject: str, field: str = "phone", view: int = pb.VIEW_MASKED, purpose: str = "") -> Any:
    return pb.GetFieldRequest(subject_id=subject, field=field, view=view, purpose=purpose)


def raised(call: Any) -> VaultError:
    with pytest.raises(VaultError) as caught:
        call()
    assert isinstance(caught.value.__cause__, grpc.RpcError)
    return caught.value


# -- typed exceptions --------------------------------------------------------------------------
def test_the_sync_client_raises_typed_errors_with_reasons(
    sqlite_server: VaultServer, subject_id: str
) -> None:
    with (
        client(sqlite_server, "registration") as registration,
        client(sqlite_server, "privacy-desk") as desk,
        client(sqlite_server, "deletion") as deletion,
    ):
        view = registration.put_field(put(subject_id, key=f"k-{subject_id}")).view
        assert view.masked == "+372 **** **67"
        assert registration.get_field(get(subject_id)).view.masked == view.masked

        bad = raised(
            lambda: registration.put_field(
                put(subject_id, value=pb.FieldValue(phone=pb.PhoneNumber(number="12")))
            )
        )
        assert type(bad) is InvalidArgument and bad.code is grpc.StatusCode.INVALID_ARGUMENT
        assert bad.reason == "INVALID_ARGUMENT" and bad.method == "PutField"
        assert [v.field for v in bad.field_violations] == ["value.phone.number"]

        missing = raised(lambda: registration.get_field(get(subject_id, "email")))
        assert type(missing) is NotFound and missing.reason == "NOT_FOUND"

        denied = raised(
            lambda: registration.get_field(get(subject_id, view=pb.VIEW_PLAINTEXT, purpose="dsar"))
        )
        assert type(denied) is PolicyDenied and isinstance(denied, PermissionDenied)
        assert denied.reason == "POLICY_DENIED" and denied.retry_after is None

        other = put(subject_id, value=OTHER_PHONE, key=f"k-{subject_id}")
        reused = raised(lambda: registration.put_field(other))
        assert type(reused) is IdempotencyMismatch and reused.reason == "IDEMPOTENCY_MISMATCH"

        desk.set_legal_hold(pb.SetLegalHoldRequest(subject_id=subject_id, hold=True, reason="LX"))
        shred = pb.ShredSubjectRequest(subject_id=subject_id, reason="t", request_id=subject_id)
        held = raised(lambda: deletion.shred_subject(shred))
        assert type(held) is LegalHold and isinstance(held, FailedPrecondition)
        assert held.reason == "LEGAL_HOLD"

        desk.set_legal_hold(pb.SetLegalHoldRequest(subject_id=subject_id, hold=False, reason="LX"))
        assert deletion.shred_subject(shred).receipt.subject_id == subject_id
        gone = raised(lambda: registration.get_field(get(subject_id)))
        assert type(gone) is SubjectShredded and gone.reason == "SUBJECT_SHREDDED"


def test_the_async_client_has_the_same_surface_and_errors(
    sqlite_server: VaultServer, subject_id: str
) -> None:
    async def flow() -> None:
        async with (
            AsyncVaultClient.for_caller(
                sqlite_server.data_dir, "registration", sqlite_server.target
            ) as registration,
            AsyncVaultClient.for_caller(
                sqlite_server.data_dir, "deletion", sqlite_server.target
            ) as deletion,
        ):
            view = (await registration.put_field(put(subject_id, key=f"a-{subject_id}"))).view
            assert view.masked == "+372 **** **67"
            found = await registration.find_subjects(pb.FindSubjectsRequest(value=PHONE))
            assert found.found
            with pytest.raises(NotFound) as missing:
                await registration.get_field(get(subject_id, "email"))
            assert missing.value.reason == "NOT_FOUND"
            shred = pb.ShredSubjectRequest(subject_id=subject_id, reason="t", request_id="r")
            receipt = (await deletion.shred_subject(shred)).receipt
            assert receipt.fields_destroyed == 1
            with pytest.raises(SubjectShredded):
                await registration.get_field(get(subject_id))

    asyncio.run(flow())


def test_an_unknown_reason_falls_back_to_the_class_of_its_status_code() -> None:
    code = grpc.StatusCode.FAILED_PRECONDITION
    assert error_class(code, "SOME_REASON_ADDED_LATER") is FailedPrecondition
    assert error_class(code, "LEGAL_HOLD") is LegalHold
    # A known reason under another code than its class's: the code decides.
    assert error_class(grpc.StatusCode.INVALID_ARGUMENT, "LEGAL_HOLD") is InvalidArgument
    assert error_class(grpc.StatusCode.UNKNOWN, "") is VaultError


# -- deadlines ---------------------------------------------------------------------------------
@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (no TLS handshake, no answer)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        for sock in held:
            sock.close()


def timed(call: Any) -> tuple[VaultError, float]:
    started = time.monotonic()
    error = raised(call)
    return error, time.monotonic() - started


def test_every_rpc_has_a_default_deadline_but_the_progress_stream() -> None:
    assert set(DEFAULT_DEADLINES) == set(METHODS)
    assert {name for name, seconds in DEFAULT_DEADLINES.items() if seconds is None} == {
        "RewrapKeys"
    }


@pytest.mark.slow
def test_the_default_deadline_and_its_overrides_apply(sqlite_server: VaultServer) -> None:
    with silent_server() as port:
        target = f"localhost:{port}"
        creds = dict(data_dir=sqlite_server.data_dir, caller="registration", target=target)
        with VaultClient.for_caller(**creds) as default:
            assert default.deadlines["GetField"] == 5.0
            error, took = timed(lambda: default.get_field(get("s")))
            assert type(error) is DeadlineExceeded and 4.5 <= took < 9, took
            error, took = timed(lambda: default.get_field(get("s"), timeout=0.3))
            assert type(error) is DeadlineExceeded and took < 3, took
        with VaultClient.for_caller(**creds, deadlines={"PutField": 0.3}) as short:
            error, took = timed(lambda: short.put_field(put("s", key="k")))
            assert type(error) is DeadlineExceeded and took < 3, took

        async def asynchronously() -> float:
            async with AsyncVaultClient.for_caller(**creds, deadlines={"GetField": 0.3}) as aio:
                started = time.monotonic()
                with pytest.raises(DeadlineExceeded):
                    await aio.get_field(get("s"))
                return time.monotonic() - started

        assert asyncio.run(asynchronously()) < 3


# -- retries -----------------------------------------------------------------------------------
@pytest.fixture
def closed_proxy(sqlite_server: VaultServer) -> Iterator[TcpProxy]:
    """A proxy to the vault whose port refuses connections until ``open_after`` opens it."""
    proxy = TcpProxy(f"tcp://127.0.0.1:{sqlite_server.port}")
    yield proxy
    proxy.stop()


def open_after(proxy: TcpProxy, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, proxy.start)
    timer.start()
    return timer


def via(proxy: TcpProxy, server: VaultServer, **settings: Any) -> VaultClient:
    return VaultClient.for_caller(
        server.data_dir,
        "registration",
        f"localhost:{proxy.port}",
        options=FAST_RECONNECT,
        **settings,
    )


@pytest.fixture
def stored(sqlite_server: VaultServer) -> str:
    subject = f"retry-{uuid.uuid4()}"
    with client(sqlite_server, "registration") as registration:
        registration.put_field(put(subject))
    return subject


def test_the_retry_config_covers_reads_only() -> None:
    config = service_config(RetryPolicy())
    for method in METHODS.values():
        listed = f'"method": "{method.name}"' in config
        assert listed is (method.kind is Kind.READ), method.name
    assert '"retryableStatusCodes": ["UNAVAILABLE"]' in config


def test_a_read_is_retried_until_the_vault_answers(
    sqlite_server: VaultServer, closed_proxy: TcpProxy, stored: str
) -> None:
    with via(closed_proxy, sqlite_server, retry=PATIENT) as patient:
        started = time.monotonic()
        open_after(closed_proxy, 0.3)
        assert patient.get_field(get(stored)).view.masked == "+372 **** **67"
        assert time.monotonic() - started >= 0.3
        assert closed_proxy.accepted >= 1


def test_without_retries_the_same_read_fails(
    sqlite_server: VaultServer, closed_proxy: TcpProxy, stored: str
) -> None:
    with via(closed_proxy, sqlite_server, retry=None) as impatient:
        timer = open_after(closed_proxy, 0.3)
        error = raised(lambda: impatient.get_field(get(stored)))
        assert type(error) is Unavailable and error.reason == ""
        timer.join()


def test_a_put_is_retried_only_with_an_idempotency_key(
    sqlite_server: VaultServer, closed_proxy: TcpProxy, subject_id: str
) -> None:
    with via(closed_proxy, sqlite_server, retry=PATIENT) as patient:
        timer = open_after(closed_proxy, 0.3)
        error = raised(lambda: patient.put_field(put(subject_id)))
        assert type(error) is Unavailable
        timer.join()
    closed_proxy.stop()
    with via(closed_proxy, sqlite_server, retry=PATIENT) as patient:
        open_after(closed_proxy, 0.3)
        view = patient.put_field(put(subject_id, key=f"retried-{subject_id}")).view
        assert view.masked == "+372 **** **67"


def test_the_async_client_retries_a_read_too(
    sqlite_server: VaultServer, closed_proxy: TcpProxy, stored: str
) -> None:
    async def read() -> str:
        async with AsyncVaultClient.for_caller(
            sqlite_server.data_dir,
            "registration",
            f"localhost:{closed_proxy.port}",
            options=FAST_RECONNECT,
            retry=PATIENT,
        ) as patient:
            open_after(closed_proxy, 0.3)
            return (await patient.get_field(get(stored))).view.masked

    assert asyncio.run(read()) == "+372 **** **67"


def test_the_async_client_retries_a_keyed_put_and_reports_each_retry(
    sqlite_server: VaultServer, closed_proxy: TcpProxy, subject_id: str
) -> None:
    retries: list[tuple[str, str, int]] = []

    async def keyed_put() -> str:
        async with AsyncVaultClient.for_caller(
            sqlite_server.data_dir,
            "registration",
            f"localhost:{closed_proxy.port}",
            options=FAST_RECONNECT,
            retry=PATIENT,
            on_retry=lambda method, error, attempt, _pause: retries.append(
                (method, error.code.name, attempt)
            ),
        ) as patient:
            open_after(closed_proxy, 0.3)
            request = put(subject_id, key=f"aio-{subject_id}")
            return (await patient.put_field(request)).view.masked

    assert asyncio.run(keyed_put()) == "+372 **** **67"
    assert retries and retries[0] == ("PutField", "UNAVAILABLE", 1)


# -- channel settings --------------------------------------------------------------------------
def test_keepalive_and_round_robin_reach_the_channel_arguments() -> None:
    options = dict(
        channel_options(
            retry=None, keepalive=Keepalive(time=20, timeout=5), round_robin=True, extra=()
        )
    )
    assert options["grpc.keepalive_time_ms"] == 20_000
    assert options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.enable_retries"] == 0
    assert '"round_robin"' in options["grpc.service_config"]
    assert '"healthCheckConfig": {"serviceName": ""}' in options["grpc.service_config"]
    # Extra channel arguments win over the client's own.
    mine = dict(
        channel_options(
            retry=None, keepalive=None, round_robin=False, extra=(("grpc.keepalive_time_ms", 1),)
        )
    )
    assert mine["grpc.keepalive_time_ms"] == 1


def test_a_round_robin_client_calls_through_a_dns_target(
    sqlite_server: VaultServer, stored: str
) -> None:
    with VaultClient.for_caller(
        sqlite_server.data_dir,
        "registration",
        f"dns:///localhost:{sqlite_server.port}",
        round_robin=True,
    ) as balanced:
        assert balanced.get_field(get(stored)).view.masked == "+372 **** **67"


# -- every method ------------------------------------------------------------------------------
def test_every_method_of_both_clients_reaches_its_rpc(
    sqlite_server: VaultServer, subject_id: str
) -> None:
    """Each wrapper calls the RPC it is named after, sync and asyncio alike."""
    email = pb.FieldValue(email="every.method@example.org")

    def sync_calls() -> list[str]:
        with (
            client(sqlite_server, "registration") as reg,
            client(sqlite_server, "checkout") as shop,
            client(sqlite_server, "privacy-desk") as desk,
            client(sqlite_server, "deletion") as deletion,
            client(sqlite_server, "admin") as admin,
        ):
            token = shop.put_field(
                put(
                    subject_id,
                    "payment_token.stripe",
                    pb.FieldValue(
                        payment_token=pb.PaymentToken(provider="stripe", token="pm_everyf3a9")
                    ),
                )
            ).view.token
            reg.put_field(put(subject_id, "email", email))
            batch = reg.batch_get_fields(pb.BatchGetFieldsRequest(items=[get(subject_id, "email")]))
            listed = reg.list_fields(pb.ListFieldsRequest(subject_id=subject_id))
            exported = desk.export_subject(
                pb.ExportSubjectRequest(subject_id=subject_id, purpose="dsar")
            )
            desk.set_consent(
                pb.SetConsentRequest(subject_id=subject_id, purpose="marketing_sms", granted=True)
            )
            deleted = deletion.delete_field(
                pb.DeleteFieldRequest(subject_id=subject_id, field="email")
            )
            status = admin.get_key_status(pb.GetKeyStatusRequest())
            admin.rotate_master_key(pb.RotateMasterKeyRequest())
            progress = list(admin.rewrap_keys(pb.RewrapKeysRequest(batch_size=50)))
            events = admin.list_events(pb.ListEventsRequest(subject_id=subject_id, page_size=10))
            chain = admin.verify_chain(pb.VerifyChainRequest())
            return [
                shop.detokenize(
                    pb.DetokenizeRequest(token=token, purpose="checkout")
                ).value.payment_token.token,
                batch.results[0].field.view.masked,
                ",".join(sorted(f.field for f in listed.fields)),
                str(len(exported.fields)),
                deleted.field,
                str(bool(status.versions)),
                str(bool(progress)),
                str(bool(events.events)),
                str(chain.ok),
            ]

    assert sync_calls() == [
        "pm_everyf3a9",
        "e***@example.org",
        "email",  # registration may not see a payment token
        "2",
        "email",
        "True",
        "True",
        "True",
        "True",
    ]

    async def async_calls() -> list[str]:
        subject = f"{subject_id}-aio"
        settings = dict(data_dir=sqlite_server.data_dir, target=sqlite_server.target)
        async with (
            AsyncVaultClient.for_caller(caller="registration", **settings) as reg,
            AsyncVaultClient.for_caller(caller="admin", **settings) as admin,
        ):
            await reg.put_field(put(subject, "email", email))
            listed = await reg.list_fields(pb.ListFieldsRequest(subject_id=subject))
            batch = await reg.batch_get_fields(
                pb.BatchGetFieldsRequest(items=[get(subject, "email")])
            )
            progress = [p async for p in admin.rewrap_keys(pb.RewrapKeysRequest(batch_size=50))]
            chain = await admin.verify_chain(pb.VerifyChainRequest())
            return [
                listed.fields[0].masked,
                batch.results[0].field.view.masked,
                str(bool(progress)),
                str(chain.ok),
            ]

    assert asyncio.run(async_calls()) == ["e***@example.org"] * 2 + ["True", "True"]


# -- a rate limit ------------------------------------------------------------------------------
TIGHT_SEARCH = """
[limits.callers.registration]
search_per_second = 0.01
search_burst = 2
"""


def test_a_spent_budget_raises_rate_limited_with_the_delay_to_wait(
    tmp_path: Path, start_vault_server: type[VaultServer]
) -> None:
    policy = tmp_path / "policy.toml"
    default = (resources.files("vault.policy") / "default_policy.toml").read_text("utf-8")
    policy.write_text(default + TIGHT_SEARCH, encoding="utf-8")
    server = start_vault_server(tmp_path / "vault", env={"PII_VAULT_POLICY": str(policy)})
    try:
        with client(server, "registration") as registration:
            search = pb.FindSubjectsRequest(value=PHONE)
            with pytest.raises(RateLimited) as limited:
                for _ in range(5):
                    registration.find_subjects(search)
        error = limited.value
        assert isinstance(error, ResourceExhausted)
        assert error.reason == "SEARCH_RATE_LIMITED"
        assert error.retry_after is not None and error.retry_after > 0
    finally:
        assert server.stop() == 0, server.output
