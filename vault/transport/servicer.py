"""gRPC servicers: translate proto to domain, make one call, translate back.

Caller identity is the common name of the verified client certificate; the
``rpc`` decorator resolves it and maps every error in one place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, Concatenate, NoReturn, TypeVar, cast

import grpc

from vault.domain.model import GetRequest
from vault.domain.shredding import Shredder
from vault.domain.vault import Vault
from vault.errors import InvalidArgument, ResourceExhausted, Unauthenticated, VaultError
from vault.transport import convert
from vault.transport.status import abort, abort_internal, status_proto
from vault.v1 import vault_pb2 as pb
from vault.v1 import vault_pb2_grpc as pb_grpc

Req = TypeVar("Req")
Resp = TypeVar("Resp")
S = TypeVar("S", bound="VaultServicer")

CALLER_METADATA = "x-vault-caller"


def caller_of(context: grpc.ServicerContext, *, trust_metadata: bool) -> str:
    """The caller's name: its certificate CN (or, on an explicit plain-text port, metadata)."""
    auth = cast(dict[str, list[bytes]], context.auth_context())
    names = auth.get("x509_common_name")
    if names:
        return names[0].decode()
    if trust_metadata:
        for key, value in context.invocation_metadata() or ():
            if key == CALLER_METADATA and isinstance(value, str) and value:
                return value
    raise Unauthenticated("no client certificate identifies the caller")


def rpc(
    method: Callable[Concatenate[S, str, Req, grpc.ServicerContext, ...], Resp],
) -> Callable[[S, Req, grpc.ServicerContext], Resp]:
    @functools.wraps(method)
    def handler(self: S, request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            caller = caller_of(context, trust_metadata=self.trust_metadata)
            return method(self, caller, request, context)
        except VaultError as error:
            abort(context, error)
        except Exception as exc:  # never a stack trace or a value to the caller
            abort_internal(context, exc, method.__name__)

    return handler


class VaultServicer(pb_grpc.VaultServiceServicer):
    def __init__(
        self,
        vault: Vault,
        shredder: Shredder,
        *,
        max_value_bytes: int,
        trust_metadata: bool = False,
    ):
        self._vault = vault
        self._shredder = shredder
        self._max_value_bytes = max_value_bytes
        self.trust_metadata = trust_metadata

    @rpc
    def PutField(  # noqa: N802 (gRPC method names)
        self, caller: str, request: pb.PutFieldRequest, context: grpc.ServicerContext
    ) -> pb.PutFieldResponse:
        value = convert.value_from_proto(request.value, self._max_value_bytes)
        view = self._vault.put_field(
            caller, request.subject_id, request.field, value, request.idempotency_key
        )
        return pb.PutFieldResponse(view=convert.view_to_proto(view))

    @rpc
    def GetField(  # noqa: N802
        self, caller: str, request: pb.GetFieldRequest, context: grpc.ServicerContext
    ) -> pb.GetFieldResponse:
        read = self._vault.get_field(
            caller,
            request.subject_id,
            request.field,
            convert.view_name(request.view),
            request.purpose,
        )
        return convert.read_to_get_response(read)

    @rpc
    def BatchGetFields(  # noqa: N802
        self, caller: str, request: pb.BatchGetFieldsRequest, context: grpc.ServicerContext
    ) -> pb.BatchGetFieldsResponse:
        if len(request.items) > self._vault.limits.max_batch:
            raise ResourceExhausted(
                f"a batch holds at most {self._vault.limits.max_batch} items", field="items"
            )
        items: list[GetRequest | VaultError] = []
        for index, wanted in enumerate(request.items):
            try:
                view = convert.view_name(wanted.view, f"items[{index}].view")
                items.append(GetRequest(wanted.subject_id, wanted.field, view, wanted.purpose))
            except VaultError as error:
                items.append(error)
        valid = [item for item in items if isinstance(item, GetRequest)]
        answers = iter(self._vault.batch_get(caller, valid))
        response = pb.BatchGetFieldsResponse()
        for index, entry in enumerate(items):
            outcome: Any = entry if isinstance(entry, VaultError) else next(answers)
            result = response.results.add()
            if isinstance(outcome, InvalidArgument) and isinstance(entry, GetRequest):
                outcome = outcome.prefixed(f"items[{index}].")
            if isinstance(outcome, VaultError):
                result.error.CopyFrom(status_proto(outcome))
            else:
                result.field.CopyFrom(convert.read_to_get_response(outcome))
        return response

    @rpc
    def ListFields(  # noqa: N802
        self, caller: str, request: pb.ListFieldsRequest, context: grpc.ServicerContext
    ) -> pb.ListFieldsResponse:
        views = self._vault.list_fields(caller, request.subject_id)
        return pb.ListFieldsResponse(fields=[convert.view_to_proto(v) for v in views])

    @rpc
    def Detokenize(  # noqa: N802
        self, caller: str, request: pb.DetokenizeRequest, context: grpc.ServicerContext
    ) -> pb.DetokenizeResponse:
        read = self._vault.detokenize(caller, request.token, request.purpose)
        response = pb.DetokenizeResponse(view=convert.view_to_proto(read.view))
        if read.value is not None:
            response.value.CopyFrom(convert.value_to_proto(read.value))
        return response

    @rpc
    def FindSubjects(  # noqa: N802
        self, caller: str, request: pb.FindSubjectsRequest, context: grpc.ServicerContext
    ) -> pb.FindSubjectsResponse:
        value = convert.value_from_proto(request.value, self._max_value_bytes)
        return pb.FindSubjectsResponse(subject_ids=self._vault.find_subjects(caller, value))

    @rpc
    def DeleteField(  # noqa: N802
        self, caller: str, request: pb.DeleteFieldRequest, context: grpc.ServicerContext
    ) -> pb.DeleteFieldResponse:
        deleted_at = self._vault.delete_field(caller, request.subject_id, request.field)
        return pb.DeleteFieldResponse(
            subject_id=request.subject_id,
            field=request.field,
            deleted_at=convert.timestamp(deleted_at),
        )

    @rpc
    def ShredSubject(  # noqa: N802
        self, caller: str, request: pb.ShredSubjectRequest, context: grpc.ServicerContext
    ) -> pb.ShredSubjectResponse:
        receipt = self._shredder.shred_subject(
            caller, request.subject_id, request.reason, request.request_id
        )
        return pb.ShredSubjectResponse(receipt=convert.receipt_to_proto(receipt))

    @rpc
    def SetLegalHold(  # noqa: N802
        self, caller: str, request: pb.SetLegalHoldRequest, context: grpc.ServicerContext
    ) -> pb.SetLegalHoldResponse:
        hold = self._shredder.set_legal_hold(
            caller, request.subject_id, request.hold, request.reason
        )
        return pb.SetLegalHoldResponse(hold=hold)

    # Later issues implement these; until then they answer UNIMPLEMENTED.
    def ExportSubject(  # noqa: N802
        self, request: pb.ExportSubjectRequest, context: grpc.ServicerContext
    ) -> pb.ExportSubjectResponse:
        unimplemented(context, "ExportSubject")

    def SetConsent(  # noqa: N802
        self, request: pb.SetConsentRequest, context: grpc.ServicerContext
    ) -> pb.SetConsentResponse:
        unimplemented(context, "SetConsent")


def unimplemented(context: grpc.ServicerContext, method: str) -> NoReturn:
    context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    raise AssertionError("abort returned")


class KeyAdminServicer(pb_grpc.KeyAdminServiceServicer):
    def RotateMasterKey(  # noqa: N802
        self, request: pb.RotateMasterKeyRequest, context: grpc.ServicerContext
    ) -> pb.RotateMasterKeyResponse:
        unimplemented(context, "RotateMasterKey")

    def RewrapKeys(  # noqa: N802
        self, request: pb.RewrapKeysRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.RewrapKeysResponse]:
        unimplemented(context, "RewrapKeys")

    def GetKeyStatus(  # noqa: N802
        self, request: pb.GetKeyStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetKeyStatusResponse:
        unimplemented(context, "GetKeyStatus")


class AuditServicer(pb_grpc.AuditServiceServicer):
    def ListEvents(  # noqa: N802
        self, request: pb.ListEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListEventsResponse:
        unimplemented(context, "ListEvents")

    def VerifyChain(  # noqa: N802
        self, request: pb.VerifyChainRequest, context: grpc.ServicerContext
    ) -> pb.VerifyChainResponse:
        unimplemented(context, "VerifyChain")
