"""A thin Python client: an mTLS channel and the vault.v1 stubs.

client = VaultClient.for_caller("var/vault", "registration")
view = client.vault.PutField(vault_pb2.PutFieldRequest(...)).view
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2_grpc
from pii_vault_client.v1 import vault_pb2_grpc as pb_grpc

DEFAULT_TARGET = "localhost:50051"


class VaultClient:
    def __init__(
        self,
        target: str,
        *,
        ca_cert: bytes,
        client_cert: bytes,
        client_key: bytes,
        options: list[tuple[str, int | str]] | None = None,
    ) -> None:
        credentials = grpc.ssl_channel_credentials(ca_cert, client_key, client_cert)
        self.channel = grpc.secure_channel(target, credentials, options=options or [])
        self.vault = pb_grpc.VaultServiceStub(self.channel)
        self.keys = pb_grpc.KeyAdminServiceStub(self.channel)
        self.audit = pb_grpc.AuditServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    @classmethod
    def for_caller(
        cls, data_dir: str | Path, caller: str, target: str = DEFAULT_TARGET
    ) -> VaultClient:
        """Use the dev PKI that ``pii-vault init`` made in ``data_dir``."""
        tls = Path(data_dir) / "tls"
        return cls(
            target,
            ca_cert=(tls / "ca.crt").read_bytes(),
            client_cert=(tls / "clients" / f"{caller}.crt").read_bytes(),
            client_key=(tls / "clients" / f"{caller}.key").read_bytes(),
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
