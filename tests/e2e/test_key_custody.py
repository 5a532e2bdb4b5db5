"""The real server on an HSM and on Transit: init, serve, and seal while the key is out of reach.

The operator's way: ``pii-vault init --key-provider URI`` then
``pii-vault serve`` with no provider flag (the data directory remembers), and
the callers' way: mTLS calls over a socket. When OpenBao seals, goes away,
or the HSM cannot be reached, health says NOT_SERVING and data calls answer
UNAVAILABLE, from warm caches too; once the provider is back the server
unseals by itself, with no restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from openbao import OpenBao, TcpProxy
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer

PHONE = "+372 5123 4567"
SEAL_WAIT = 15.0  # the server checks its provider every second


def _put(server: VaultServer, subject: str) -> None:
    server.client("registration").vault.PutField(
        pb.PutFieldRequest(
            subject_id=subject,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number=PHONE)),
        ),
        timeout=30,
    )


def _masked(server: VaultServer, subject: str) -> str:
    answer = server.client("registration").vault.GetField(
        pb.GetFieldRequest(subject_id=subject, field="phone", view=pb.VIEW_MASKED), timeout=30
    )
    return answer.view.masked


def _health(server: VaultServer) -> int:
    answer = server.client("registration").health.Check(
        health_pb2.HealthCheckRequest(service=""), timeout=10
    )
    return int(answer.status)


def _wait_for_health(server: VaultServer, status: int) -> None:
    deadline = time.monotonic() + SEAL_WAIT
    while _health(server) != status:
        assert time.monotonic() < deadline, f"health never became {status}:\n{server.output}"
        time.sleep(0.1)


def _served(
    start_vault_server: type[VaultServer],
    run_vault: Callable[..., object],
    data_dir: Path,
    uri: str,
) -> Iterator[VaultServer]:
    init = run_vault("init", "--data-dir", str(data_dir), "--key-provider", uri)
    assert init.returncode == 0, init.stderr  # type: ignore[attr-defined]
    assert not (data_dir / "keyring.json").exists()
    server = start_vault_server(data_dir, init=False)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.output


@pytest.fixture
def transit_server(
    start_vault_server: type[VaultServer],
    run_vault: Callable[..., object],
    openbao: OpenBao,
    tcp_proxy: TcpProxy,
    transit_key: str,
    tmp_path: Path,
) -> Iterator[VaultServer]:
    """A server whose Transit is reached through ``tcp_proxy``, so a test can cut it off."""
    uri = openbao.uri(transit_key).replace(
        openbao.address.split("://", 1)[1], f"127.0.0.1:{tcp_proxy.port}"
    )
    yield from _served(start_vault_server, run_vault, tmp_path / "vault", uri)


@pytest.fixture
def pkcs11_server(
    start_vault_server: type[VaultServer],
    run_vault: Callable[..., object],
    pkcs11_uri: str,
    tmp_path: Path,
) -> Iterator[VaultServer]:
    yield from _served(start_vault_server, run_vault, tmp_path / "vault", pkcs11_uri)


def test_a_server_on_an_hsm_stores_and_reads_over_mtls(
    pkcs11_server: VaultServer, new_subject_id: Callable[[], str]
) -> None:
    subject = new_subject_id()
    _put(pkcs11_server, subject)
    assert _masked(pkcs11_server, subject) == "+372 **** **67"
    assert _health(pkcs11_server) == health_pb2.HealthCheckResponse.SERVING


def test_a_server_on_transit_seals_when_openbao_seals_and_unseals_by_itself(
    transit_server: VaultServer, openbao: OpenBao, new_subject_id: Callable[[], str]
) -> None:
    subject = new_subject_id()
    _put(transit_server, subject)
    assert _masked(transit_server, subject) == "+372 **** **67"  # warm now

    openbao.seal()
    try:
        _wait_for_health(transit_server, health_pb2.HealthCheckResponse.NOT_SERVING)
        with pytest.raises(grpc.RpcError) as refused:
            _masked(transit_server, subject)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        openbao.unseal()
    _wait_for_health(transit_server, health_pb2.HealthCheckResponse.SERVING)
    assert _masked(transit_server, subject) == "+372 **** **67"
    assert "vault sealed" in transit_server.output and "vault unsealed" in transit_server.output


def test_a_server_on_transit_seals_when_openbao_goes_away_and_unseals_when_it_returns(
    transit_server: VaultServer, tcp_proxy: TcpProxy, new_subject_id: Callable[[], str]
) -> None:
    subject = new_subject_id()
    _put(transit_server, subject)

    tcp_proxy.stop()
    _wait_for_health(transit_server, health_pb2.HealthCheckResponse.NOT_SERVING)
    for call in (lambda: _masked(transit_server, subject), lambda: _put(transit_server, subject)):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    tcp_proxy.start()
    _wait_for_health(transit_server, health_pb2.HealthCheckResponse.SERVING)
    assert _masked(transit_server, subject) == "+372 **** **67"
