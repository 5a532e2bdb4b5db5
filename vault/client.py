"""The server package's client: ``pii_vault_client`` (clients/python) plus gRPC health.

The client lives in its own light distribution, ``pii-vault-client``; this module
re-exports it for code inside the server package (the CLI's caller commands, the
tests) and adds the ``grpc.health.v1`` stub, whose package (grpcio-health-checking)
the server has and the client distribution does not need.

    client = VaultClient.for_caller("var/vault", "registration")
    view = client.put_field(vault_pb2.PutFieldRequest(...)).view
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health_pb2_grpc
from pii_vault_client import (
    DEFAULT_TARGET,
    AsyncVaultClient,
    Credentials,
    VaultError,
    error_info,
    error_reason,
    from_rpc_error,
    retry_delay,
)
from pii_vault_client import VaultClient as _LightClient

__all__ = [
    "DEFAULT_TARGET",
    "AsyncVaultClient",
    "Credentials",
    "VaultClient",
    "VaultError",
    "error_info",
    "error_reason",
    "from_rpc_error",
    "retry_delay",
]


class VaultClient(_LightClient):
    """``pii_vault_client.VaultClient`` with ``health``, the gRPC health stub.

    Also takes the PEM bytes as ``ca_cert=``, ``client_cert=``, ``client_key=``
    instead of ``credentials``, as this module's earlier client did.
    """

    def __init__(
        self,
        target: str,
        credentials: Credentials | None = None,
        *,
        ca_cert: bytes | None = None,
        client_cert: bytes | None = None,
        client_key: bytes | None = None,
        **settings: Any,
    ) -> None:
        if credentials is None:
            if ca_cert is None or client_cert is None or client_key is None:
                raise TypeError("give credentials, or ca_cert, client_cert and client_key")
            credentials = Credentials(ca=ca_cert, cert=client_cert, key=client_key)
        super().__init__(target, credentials, **settings)
        self.health = health_pb2_grpc.HealthStub(self.channel)
