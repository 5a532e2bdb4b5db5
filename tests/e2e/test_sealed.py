"""The sealed state, end to end: no usable keyring, no answers; the keyring back, service back.

A real server on SQLite polls its keyring every 0.2 s. Taking the keyring away
(or making it unsafe) must turn health to NOT_SERVING and every data call to
UNAVAILABLE within a few seconds — even for a value whose key was warm in the
cache a moment before — and putting it back must bring the vault back
without a restart. A server started without its keyring starts sealed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient, error_reason
from vault.transport.servicer import SEALED_MESSAGE

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

ENV = {"VAULT_SEAL_CHECK_INTERVAL": "0.2"}
DEADLINE = 10.0
PHONE = "+372 5123 4567"
PHONE_E164 = "+37251234567"
MASKED = "+372 **** **67"
HEALTH_NAMES = ("", "vault.v1.VaultService", "vault.v1.KeyAdminService")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_vault_server: type[VaultServer]
) -> Iterator[VaultServer]:
    server = start_vault_server(tmp_path_factory.mktemp("vault-sealed"), env=ENV)
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.output


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {DEADLINE}s"
        time.sleep(0.05)


def health_of(server: VaultServer) -> set[int]:
    health = server.client("admin").health
    return {
        health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
        for name in HEALTH_NAMES
    }


def put_phone(client: VaultClient, subject: str) -> pb.FieldView:
    value = pb.FieldValue(phone=pb.PhoneNumber(number=PHONE))
    request = pb.PutFieldRequest(subject_id=subject, field="phone", value=value)
    return client.vault.PutField(request, timeout=5).view


def get_phone(
    client: VaultClient, subject: str, view: pb.View.ValueType = pb.VIEW_MASKED, purpose: str = ""
) -> pb.GetFieldResponse:
    request = pb.GetFieldRequest(subject_id=subject, field="phone", view=view, purpose=purpose)
    return client.vault.GetField(request, timeout=5)


def refused(call: Callable[[], object]) -> grpc.RpcError:
    """``call`` fails UNAVAILABLE with the sealed message, and shows no value."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() is grpc.StatusCode.UNAVAILABLE, error
    assert error.details() == SEALED_MESSAGE
    assert error_reason(error) == "SEALED"
    assert PHONE_E164 not in str(error) and "5123" not in str(error)
    return error


def assert_sealed(server: VaultServer, subject: str) -> None:
    """Every kind of call is refused; health and reflection still answer."""
    registration = server.client("registration")
    desk = server.client("privacy-desk")
    refused(lambda: get_phone(registration, subject))
    refused(lambda: get_phone(desk, subject, pb.VIEW_PLAINTEXT, "dsar"))
    refused(lambda: put_phone(registration, subject + "-new"))
    refused(
        lambda: desk.vault.BatchGetFields(
            pb.BatchGetFieldsRequest(items=[pb.GetFieldRequest(subject_id=subject, field="phone")]),
            timeout=5,
        )
    )
    admin = server.client("admin")
    refused(lambda: admin.keys.GetKeyStatus(pb.GetKeyStatusRequest(), timeout=5))
    refused(lambda: list(admin.keys.RewrapKeys(pb.RewrapKeysRequest(), timeout=5)))
    assert health_of(server) == {NOT_SERVING}
    stub = reflection_pb2_grpc.ServerReflectionStub(admin.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [answer] = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    assert "vault.v1.VaultService" in {s.name for s in answer.list_services_response.service}


def assert_serving_again(server: VaultServer, subject: str) -> None:
    eventually(lambda: health_of(server) == {SERVING}, "SERVING again")
    assert get_phone(server.client("registration"), subject).view.masked == MASKED
    plain = get_phone(server.client("privacy-desk"), subject, pb.VIEW_PLAINTEXT, "dsar")
    assert plain.value.phone.number == PHONE_E164


def stored_and_warm(server: VaultServer, subject: str) -> None:
    """A phone stored, and its keys in the server's caches from a plaintext read."""
    assert health_of(server) == {SERVING}
    put_phone(server.client("registration"), subject)
    plain = get_phone(server.client("privacy-desk"), subject, pb.VIEW_PLAINTEXT, "dsar")
    assert plain.value.phone.number == PHONE_E164
    assert get_phone(server.client("registration"), subject).view.masked == MASKED


def test_a_missing_keyring_seals_even_a_warm_cache_and_its_return_unseals(
    server: VaultServer, subject_id: str
) -> None:
    keyring = server.data_dir / "keyring.json"
    stored_and_warm(server, subject_id)
    sealed_logs = server.output.count("vault sealed:")

    aside = keyring.rename(server.data_dir / "keyring.json.away")
    try:
        eventually(lambda: health_of(server) == {NOT_SERVING}, "NOT_SERVING")
        assert_sealed(server, subject_id)
        time.sleep(0.5)  # a few more checks while sealed: still one log line
        assert server.output.count("vault sealed:") == sealed_logs + 1
        assert "not reachable" in server.output
    finally:
        aside.rename(keyring)

    assert_serving_again(server, subject_id)
    assert "vault unsealed" in server.output
    put_phone(server.client("registration"), subject_id + "-after")


@pytest.mark.parametrize(
    ("mode", "reason"),
    [(0o644, "group- or world-accessible"), (0o000, "not readable by its owner")],
)
def test_an_unsafe_or_unreadable_keyring_seals(
    server: VaultServer, new_subject_id: Callable[[], str], mode: int, reason: str
) -> None:
    keyring = server.data_dir / "keyring.json"
    subject = new_subject_id()
    stored_and_warm(server, subject)

    os.chmod(keyring, mode)
    try:
        eventually(lambda: health_of(server) == {NOT_SERVING}, "NOT_SERVING")
        assert_sealed(server, subject)
        assert reason in server.output
    finally:
        os.chmod(keyring, 0o600)

    assert_serving_again(server, subject)


def test_a_server_started_without_its_keyring_starts_sealed_and_unseals(
    tmp_path: Path,
    start_vault_server: type[VaultServer],
    subject_id: str,
) -> None:
    data_dir = tmp_path / "vault"
    server = start_vault_server(data_dir, env=ENV)  # init, and a first phone
    try:
        put_phone(server.client("registration"), subject_id)
    finally:
        assert server.stop() == 0, server.output
    keyring = data_dir / "keyring.json"
    aside = keyring.rename(data_dir / "keyring.json.away")

    server = start_vault_server(data_dir, init=False, env=ENV)
    try:
        assert health_of(server) == {NOT_SERVING}  # from the first answer, not after a while
        assert_sealed(server, subject_id)
        assert "vault sealed:" in server.output

        aside.rename(keyring)
        assert_serving_again(server, subject_id)
        registration = server.client("registration")
        search = pb.FindSubjectsRequest(value=pb.FieldValue(phone=pb.PhoneNumber(number=PHONE)))
        # The index row written before the seal is found (registration learns only "held").
        assert registration.vault.FindSubjects(search, timeout=5).found
        put_phone(registration, subject_id + "-after")
        assert registration.vault.FindSubjects(search, timeout=5).found
    finally:
        assert server.stop() == 0, server.output
    assert PHONE_E164 not in server.output
