"""The synchronous client: one mTLS channel, a method per RPC, typed exceptions.

    from pii_vault_client import VaultClient
    from pii_vault_client.v1 import vault_pb2 as pb

    with VaultClient.for_caller("var/vault", "registration") as client:
        view = client.put_field(pb.PutFieldRequest(...)).view

Each method applies its default deadline (``config.DEFAULT_DEADLINES``; override
per client with ``deadlines={...}`` or per call with ``timeout=``), retries
``UNAVAILABLE`` where that is safe (``config`` explains which calls), and raises a
``VaultError`` subclass (``errors``) instead of ``grpc.RpcError``. The generated
stubs are there too (``client.vault``, ``client.keys``, ``client.audit``: no
default deadline, ``grpc.RpcError``; reads still retried by the channel).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

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


class VaultClient:
    """A caller of the vault over mTLS.

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
        sleep: Callable[[float], None] = time.sleep,
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
        self.channel = grpc.secure_channel(
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

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the one place a call is made ------------------------------------------------------------
    def _call(
        self,
        method: str,
        stub: grpc.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        timeout: Timeout,
        key: str = "",
    ) -> Resp:
        deadline = self._settings.deadline(method, timeout)
        attempts = self._settings.attempts(method, key)
        attempt = 1
        while True:
            try:
                return stub(request, timeout=remaining(deadline))
            except grpc.RpcError as error:
                pause = None
                if attempt < attempts and retryable(error):
                    pause = self._settings.pause_before(attempt, deadline)
                failure = from_rpc_error(error, method)
                if pause is None:
                    raise failure from error
                if self._on_retry is not None:
                    self._on_retry(method, failure, attempt, pause)
            self._sleep(pause)
            attempt += 1

    # -- VaultService ------------------------------------------------------------------------------
    def put_field(
        self, request: pb.PutFieldRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.PutFieldResponse:
        """Retried on UNAVAILABLE only when ``idempotency_key`` is set."""
        return self._call(
            "PutField", self.vault.PutField, request, timeout, request.idempotency_key
        )

    def get_field(
        self, request: pb.GetFieldRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.GetFieldResponse:
        return self._call("GetField", self.vault.GetField, request, timeout)

    def batch_get_fields(
        self, request: pb.BatchGetFieldsRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.BatchGetFieldsResponse:
        return self._call("BatchGetFields", self.vault.BatchGetFields, request, timeout)

    def list_fields(
        self, request: pb.ListFieldsRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.ListFieldsResponse:
        return self._call("ListFields", self.vault.ListFields, request, timeout)

    def detokenize(
        self, request: pb.DetokenizeRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.DetokenizeResponse:
        return self._call("Detokenize", self.vault.Detokenize, request, timeout)

    def find_subjects(
        self, request: pb.FindSubjectsRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.FindSubjectsResponse:
        return self._call("FindSubjects", self.vault.FindSubjects, request, timeout)

    def delete_field(
        self, request: pb.DeleteFieldRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.DeleteFieldResponse:
        return self._call("DeleteField", self.vault.DeleteField, request, timeout)

    def shred_subject(
        self, request: pb.ShredSubjectRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.ShredSubjectResponse:
        """Retried on UNAVAILABLE only when ``request_id`` is set (a repeat returns the receipt)."""
        return self._call(
            "ShredSubject", self.vault.ShredSubject, request, timeout, request.request_id
        )

    def export_subject(
        self, request: pb.ExportSubjectRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.ExportSubjectResponse:
        return self._call("ExportSubject", self.vault.ExportSubject, request, timeout)

    def set_legal_hold(
        self, request: pb.SetLegalHoldRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.SetLegalHoldResponse:
        return self._call("SetLegalHold", self.vault.SetLegalHold, request, timeout)

    def set_consent(
        self, request: pb.SetConsentRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.SetConsentResponse:
        return self._call("SetConsent", self.vault.SetConsent, request, timeout)

    # -- KeyAdminService ---------------------------------------------------------------------------
    def rotate_master_key(
        self, request: pb.RotateMasterKeyRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.RotateMasterKeyResponse:
        return self._call("RotateMasterKey", self.keys.RotateMasterKey, request, timeout)

    def rewrap_keys(
        self, request: pb.RewrapKeysRequest, *, timeout: Timeout = DEFAULT
    ) -> Iterator[pb.RewrapKeysResponse]:
        """Progress messages as the server streams them; no default deadline."""
        deadline = self._settings.deadline("RewrapKeys", timeout)
        try:
            yield from self.keys.RewrapKeys(request, timeout=remaining(deadline))
        except grpc.RpcError as error:
            raise from_rpc_error(error, "RewrapKeys") from error

    def get_key_status(
        self, request: pb.GetKeyStatusRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.GetKeyStatusResponse:
        return self._call("GetKeyStatus", self.keys.GetKeyStatus, request, timeout)

    # -- AuditService ------------------------------------------------------------------------------
    def list_events(
        self, request: pb.ListEventsRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.ListEventsResponse:
        return self._call("ListEvents", self.audit.ListEvents, request, timeout)

    def verify_chain(
        self, request: pb.VerifyChainRequest, *, timeout: Timeout = DEFAULT
    ) -> pb.VerifyChainResponse:
        return self._call("VerifyChain", self.audit.VerifyChain, request, timeout)
