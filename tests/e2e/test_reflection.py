"""Server reflection answers over mTLS in both protocols: v1 and v1alpha.

v1 is what current grpcurl and ``buf curl`` ask first; grpcio-reflection serves
only v1alpha, so the server answers v1 with the same servicer (the messages are
identical on the wire). Checked twice: a raw v1 stream from Python, and
``buf curl --reflect-protocol grpc-v1`` (an independent v1 client; it needs
Node.js for buf, so it skips without it unless ``VAULT_REQUIRE_NODE=1``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from scripts.gen_proto import NODE_BIN, install_node_tools

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
SERVED = {
    "vault.v1.VaultService",
    "vault.v1.KeyAdminService",
    "vault.v1.AuditService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


def _v1(
    server: VaultServer, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    """A v1 ServerReflectionInfo stream (v1 messages are v1alpha's, field for field)."""
    call = server.client("registration").channel.stream_stream(
        V1_METHOD,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return list(call(iter(requests), timeout=10))


def test_v1_lists_every_service_and_describes_the_contract(sqlite_server: VaultServer) -> None:
    listed, described = _v1(
        sqlite_server,
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="vault.v1.VaultService"),
    )
    assert {s.name for s in listed.list_services_response.service} == SERVED
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    [contract] = [f for f in files if f.name == "vault/v1/vault.proto"]
    assert {s.name for s in contract.service} == {"VaultService", "KeyAdminService", "AuditService"}


def test_v1alpha_still_answers(sqlite_server: VaultServer) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(sqlite_server.client("registration").channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [answer] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    assert {s.name for s in answer.list_services_response.service} == SERVED


def test_buf_curl_lists_the_services_over_reflection_v1(sqlite_server: VaultServer) -> None:
    if shutil.which("npm") is None:
        reason = "buf comes from clients/node and needs Node.js"
        if os.environ.get("VAULT_REQUIRE_NODE") == "1":
            pytest.fail(f"{reason}, and VAULT_REQUIRE_NODE=1 says it must run")
        pytest.skip(reason)
    install_node_tools()
    tls = sqlite_server.data_dir / "tls"
    result = subprocess.run(
        [
            str(NODE_BIN / "buf"),
            "curl",
            "--protocol",
            "grpc",
            "--reflect-protocol",
            "grpc-v1",
            "--list-services",
            "--cacert",
            str(tls / "ca.crt"),
            "--cert",
            str(tls / "clients" / "registration.crt"),
            "--key",
            str(tls / "clients" / "registration.key"),
            f"https://{sqlite_server.target}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == SERVED
