"""The asyncio client (``grpc.aio``): the same surface as ``VaultClient``, awaited.

    from pii_vault_client import AsyncVaultClient

    async with AsyncVaultClient.for_caller("var/vault", "registration") as client:
        view = (await client.put_field(pb.PutFieldRequest(...))).view

Deadlines, retries and exceptions as in ``pii_vault_client.client``. Make the
client inside the event loop that uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
import grpc.aio

from pii_vault_client._base import (
    DEFAULT,
    DEFAULT_TARGET,
    RetryHook,
    Settings,
    Timeout,
    remaining,
    retryable,
)
from pii_vault_client.config import DEFAULT_KEEPALIVE, DEFAULT_RETRY, Keepalive, RetryPolicy
from pii_vault_client.credentials import Credentials
from pii_vault_client.errors import from_rpc_error
from pii_vault_client.v1 import vault_pb2 as pb
from pii_vault_client.v1 import vault_pb2_grpc as pb_grpc

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class AsyncVaultClient:
    """A caller of the vault over mTLS, for asyncio.

    ``target`` is a gRPC target: ``host:port``, or ``dns:///host:port`` with
    ``round_robin=True`` to spread calls over every address the name resolves to.
    ``retry=None`` turns retries off; ``keepalive=None`` turns pings off;
    ``options`` are extra gRPC channel arguments (they win over ours).
    ``on_retry(method, error, attempt, pause)`` is told of each retry the client
    makes itself (keyed calls; gRPC retries reads without telling).
    """

    def __init__(
        self,
        target: str,
        credentials: Credentials,
        *,
        deadlines: Mapping[str, float | None] | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        keepalive: Keepalive | None = DEFAULT_KEEPALIVE,
        round_robin: bool = False,
        options: Sequence[tuple[str, Any]] = (),
        on_retry: RetryHook | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.target = target
        self._settings = Settings(
            deadlines=deadlines,
            retry=retry,
            keepalive=keepalive,
            round_robin=round_robin,
            options=options,
        )
        self._sleep = sleep
        self._on_retry = on_retry
        self.channel = grpc.aio.secure_channel(
            target, credentials.channel_credentials(), options=self._settings.options
        )
        self.vault = pb_grpc.VaultServiceStub(self.channel)
        self.keys = pb_grpc.KeyAdminServiceStub(self.channel)
        self.audit = pb_grpc.AuditServiceStub(self.channel)

    @classmethod
    def from_files(
        cls,
        target: str,
        *,
        ca: str | Path,
        cert: str | Path,
        key: str | Path,
        **settings: Any,
    ) -> Self:
        """PEM files: the CA that signed the vault's certificate; the caller's cert and key."""
        return cls(target, Credentials.from_files(ca=ca, cert=cert, key=key), **settings)

    @classmethod
    def for_caller(
        cls, data_dir: str | Path, caller: str, target: str = DEFAULT_TARGET, **settings: Any
    ) -> Self:
        """The dev PKI that ``pii-vault init`` made in ``data_dir`` (``DIR/tls/...``)."""
        return cls(target, Credentials.from_data_dir(data_dir, caller), **settings)

    @property
    def deadlines(self) -> Mapping[str, float | None]:
        return dict(self._settings.deadlines)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the one place a call is made ------------------------------------------------------------
    async def _call(
        self,
        method: str,
        stub: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        timeout: Timeout,
        key: str = "",
    ) -> Resp:
        deadline = self._settings.deadline(method, timeout)
        attempts = self._settings.attempts(method, key)
        attempt = 1
        while True:
            try:
                return await stub(request, timeout=remaining(deadline))
            except grpc.RpcError as error:
                pause = None
                if attempt < attempts and retryable(error):
                    pause = self._settings.pause_before(attempt, deadline)
                failure = from_rpc_error(error, method)
                if pause is None:
                    raise failure from error
                if self._on_retry is not None:
                    self._on_retry(method, failure, attempt, pause)
            await self._sleep(pause)
            attempt += 1

    # -- VaultService ------------------------------------------------------------------------------
    async def put_field(
        self, request: pb.PutFieldRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.PutFieldResponse:
        """Retried on UNAVAILABLE only when ``idempotency_key`` is set."""
        return await self._call(
            "PutField", self.vault.PutField, request, timeout, request.idempotency_key
        )

    async def get_field(
        self, request: pb.GetFieldRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.GetFieldResponse:
        return await self._call("GetField", self.vault.GetField, request, timeout)

    async def batch_get_fields(
        self, request: pb.BatchGetFieldsRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.BatchGetFieldsResponse:
        return await self._call("BatchGetFields", self.vault.BatchGetFields, request, timeout)

    async def list_fields(
        self, request: pb.ListFieldsRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.ListFieldsResponse:
        return await self._call("ListFields", self.vault.ListFields, request, timeout)

    async def detokenize(
        self, request: pb.DetokenizeRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.DetokenizeResponse:
        return await self._call("Detokenize", self.vault.Detokenize, request, timeout)

    async def find_subjects(
        self, request: pb.FindSubjectsRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.FindSubjectsResponse:
        return await self._call("FindSubjects", self.vault.FindSubjects, request, timeout)

    async def delete_field(
        self, request: pb.DeleteFieldRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.DeleteFieldResponse:
        return await self._call("DeleteField", self.vault.DeleteField, request, timeout)

    async def shred_subject(
        self, request: pb.ShredSubjectRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.ShredSubjectResponse:
        """Retried on UNAVAILABLE only when ``request_id`` is set (a repeat returns the receipt)."""
        return await self._call(
            "ShredSubject", self.vault.ShredSubject, request, timeout, request.request_id
        )

    async def export_subject(
        self, request: pb.ExportSubjectRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.ExportSubjectResponse:
        return await self._call("ExportSubject", self.vault.ExportSubject, request, timeout)

    async def set_legal_hold(
        self, request: pb.SetLegalHoldRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.SetLegalHoldResponse:
        return await self._call("SetLegalHold", self.vault.SetLegalHold, request, timeout)

    async def set_consent(
        self, request: pb.SetConsentRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.SetConsentResponse:
        return await self._call("SetConsent", self.vault.SetConsent, request, timeout)

    # -- KeyAdminService ---------------------------------------------------------------------------
    async def rotate_master_key(
        self, request: pb.RotateMasterKeyRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.RotateMasterKeyResponse:
        return await self._call("RotateMasterKey", self.keys.RotateMasterKey, request, timeout)

    async def rewrap_keys(
        self, request: pb.RewrapKeysRequest, *, timeout: Timeout = DEFAULT
    ) -> AsyncIterator[pb.RewrapKeysResponse]:
        """Progress messages as the server streams them; no default deadline."""
        deadline = self._settings.deadline("RewrapKeys", timeout)
        try:
            async for progress in self.keys.RewrapKeys(request, timeout=remaining(deadline)):
                yield progress
        except grpc.RpcError as error:
            raise from_rpc_error(error, "RewrapKeys") from error

    async def get_key_status(
        self, request: pb.GetKeyStatusRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.GetKeyStatusResponse:
        return await self._call("GetKeyStatus", self.keys.GetKeyStatus, request, timeout)

    # -- AuditService ------------------------------------------------------------------------------
    async def list_events(
        self, request: pb.ListEventsRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.ListEventsResponse:
        return await self._call("ListEvents", self.audit.ListEvents, request, timeout)

    async def verify_chain(
        self, request: pb.VerifyChainRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.VerifyChainResponse:
        return await self._call("VerifyChain", self.audit.VerifyChain, request, timeout)
