"""gRPC servicers: translate proto to domain, make one call, translate back.

Caller identity is the one name of the verified client certificate (its CN,
or a URI SAN the policy maps; ``vault.transport.identity``); the ``rpc``
decorator resolves it and maps every error in one place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import UTC
from typing import Any, Concatenate, Protocol, TypeVar, cast

import grpc
from pii_vault_client.v1 import vault_pb2 as pb
from pii_vault_client.v1 import vault_pb2_grpc as pb_grpc

from vault.domain.audit_reader import AuditReader
from vault.domain.key_admin import KeyAdmin
from vault.domain.model import GetRequest
from vault.domain.shredding import Shredder
from vault.domain.vault import Vault
from vault.errors import (
    InvalidArgument,
    Reason,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    VaultError,
)
from vault.policy.identity import CN_IDENTITY, IdentityRules
from vault.transport import convert
from vault.transport.identity import caller_from_certificate
from vault.transport.request_ids import CURRENT_CALL
from vault.transport.status import abort, abort_internal, status_proto

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class SealState(Protocol):
    """Whether the vault is sealed (``vault.bootstrap.seal.Seal``): then every call is refused."""

    @property
    def sealed(self) -> bool: ...


class _NeverSealed:
    sealed = False


NEVER_SEALED: SealState = _NeverSealed()
SEALED_MESSAGE = "the vault is sealed: its master key cannot be reached"
DRAINING_MESSAGE = "the server is shutting down: retry on another replica"


class ServingGate:
    """The seal, plus the drain on shutdown: either one refuses new calls UNAVAILABLE.

    Read on every call like the seal itself: two attribute reads, no lock.
    Once ``draining`` is set (SIGTERM, after the drain delay) a call that
    starts is answered UNAVAILABLE, which every retry policy retries
    elsewhere, instead of being cut off ``CANCELLED`` when the port closes.
    """

    def __init__(self, seal: SealState) -> None:
        self._seal = seal
        self.draining = False

    @property
    def sealed(self) -> bool:
        return self.draining or self._seal.sealed


def _refusal(seal: SealState) -> Unavailable:
    if getattr(seal, "draining", False):
        return Unavailable(DRAINING_MESSAGE, reason=Reason.DRAINING)
    return Unavailable(SEALED_MESSAGE, reason=Reason.SEALED)


AuthFailureHook = Callable[[str, str], None]
"""Audits a refused, unidentified call (RPC name, why) before it is answered."""


def _no_hook(_method: str, _reason: str) -> None:
    return None


def _cn_identity() -> IdentityRules:
    return CN_IDENTITY


class _Servicer(Protocol):
    trust_metadata: bool
    seal: SealState
    on_auth_failure: AuthFailureHook
    identity: Callable[[], IdentityRules]


S = TypeVar("S", bound=_Servicer)

CALLER_METADATA = "x-vault-caller"


def caller_of(
    context: grpc.ServicerContext,
    *,
    trust_metadata: bool,
    identity: IdentityRules = CN_IDENTITY,
) -> str:
    """The caller's name: the one its certificate names (or, on a plain-text port, metadata).

    Exactly one name per certificate (``vault.transport.identity``); a
    certificate naming none or several raises ``Unauthenticated``.
    """
    auth = cast(dict[str, list[bytes]], context.auth_context())
    certificates = auth.get("x509_pem_cert")
    if certificates:
        return caller_from_certificate(certificates[0], identity)
    if auth.get("x509_common_name"):  # a peer certificate gRPC would not show us whole
        raise Unauthenticated("the client certificate cannot be read")
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
        call = CURRENT_CALL.set(context)  # for the request id of any line logged now
        try:
            if self.seal.sealed:  # fail closed: nothing is decrypted while sealed
                raise _refusal(self.seal)
            try:
                caller = caller_of(
                    context, trust_metadata=self.trust_metadata, identity=self.identity()
                )
            except Unauthenticated as refused:  # fail closed: raises if not written
                self.on_auth_failure(method.__name__, refused.message)
                raise
            return method(self, caller, request, context)
        except VaultError as error:
            abort(context, error)
        except Exception as exc:  # never a stack trace or a value to the caller
            abort_internal(context, exc, method.__name__)
        finally:
            CURRENT_CALL.reset(call)

    return handler


class VaultServicer(pb_grpc.VaultServiceServicer):
    def __init__(
        self,
        vault: Vault,
        shredder: Shredder,
        *,
        max_value_bytes: int,
        trust_metadata: bool = False,
        seal: SealState = NEVER_SEALED,
    ):
        self._vault = vault
        self._shredder = shredder
        self._max_value_bytes = max_value_bytes
        self.trust_metadata = trust_metadata
        self.seal = seal
        self.on_auth_failure: AuthFailureHook = _no_hook
        self.identity: Callable[[], IdentityRules] = _cn_identity

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
                convert.fill_get_response(result.field, outcome)
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
        result = self._vault.find_subjects(caller, value)
        return pb.FindSubjectsResponse(found=result.found, subject_ids=result.subject_ids)

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

    @rpc
    def ExportSubject(  # noqa: N802
        self, caller: str, request: pb.ExportSubjectRequest, context: grpc.ServicerContext
    ) -> pb.ExportSubjectResponse:
        reads, history = self._vault.export_subject(caller, request.subject_id, request.purpose)
        return convert.export_to_proto(
            request.subject_id, request.purpose, reads, history, self._shredder.sign_export
        )

    @rpc
    def SetConsent(  # noqa: N802
        self, caller: str, request: pb.SetConsentRequest, context: grpc.ServicerContext
    ) -> pb.SetConsentResponse:
        granted = self._vault.guards.set_consent(
            caller, request.subject_id, request.purpose, request.granted
        )
        return pb.SetConsentResponse(granted=granted)


def rpc_stream(
    method: Callable[Concatenate[S, str, Req, grpc.ServicerContext, ...], Iterator[Resp]],
) -> Callable[[S, Req, grpc.ServicerContext], Iterator[Resp]]:
    """``rpc`` for server-streaming methods: an error mid-stream ends it with its status."""

    @functools.wraps(method)
    def handler(self: S, request: Req, context: grpc.ServicerContext) -> Iterator[Resp]:
        CURRENT_CALL.set(context)  # a generator: the next call on this thread sets it again
        try:
            if self.seal.sealed:
                raise _refusal(self.seal)
            try:
                caller = caller_of(
                    context, trust_metadata=self.trust_metadata, identity=self.identity()
                )
            except Unauthenticated as refused:
                self.on_auth_failure(method.__name__, refused.message)
                raise
            yield from method(self, caller, request, context)
        except VaultError as error:
            abort(context, error)
        except Exception as exc:  # never a stack trace or a value to the caller
            abort_internal(context, exc, method.__name__)

    return handler


RETIRED_VERSIONS_METADATA = "x-vault-retired-versions"
"""Trailing metadata of RewrapKeys: the master key versions it retired, comma-separated."""


class KeyAdminServicer(pb_grpc.KeyAdminServiceServicer):
    def __init__(
        self, admin: KeyAdmin, *, trust_metadata: bool = False, seal: SealState = NEVER_SEALED
    ) -> None:
        self._admin = admin
        self.trust_metadata = trust_metadata
        self.seal = seal
        self.on_auth_failure: AuthFailureHook = _no_hook
        self.identity: Callable[[], IdentityRules] = _cn_identity

    @rpc
    def RotateMasterKey(  # noqa: N802
        self, caller: str, request: pb.RotateMasterKeyRequest, context: grpc.ServicerContext
    ) -> pb.RotateMasterKeyResponse:
        info = self._admin.rotate(caller)
        return pb.RotateMasterKeyResponse(key_id=info.kek_id, version=info.version)

    @rpc_stream
    def RewrapKeys(  # noqa: N802
        self, caller: str, request: pb.RewrapKeysRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.RewrapKeysResponse]:
        job = self._admin.rewrap(caller, request.batch_size)
        for done, total in job:
            yield pb.RewrapKeysResponse(done=done, total=total)
        retired = ",".join(str(info.version) for info in job.retired)
        context.set_trailing_metadata(((RETIRED_VERSIONS_METADATA, retired),))

    @rpc
    def GetKeyStatus(  # noqa: N802
        self, caller: str, request: pb.GetKeyStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetKeyStatusResponse:
        response = pb.GetKeyStatusResponse()
        for status in self._admin.status(caller):
            version = response.versions.add(
                key_id=status.kek_id,
                version=status.version,
                state=convert.key_state_to_proto(status.state),
                uses=status.uses,
            )
            if status.created_at is not None:
                version.created_at.CopyFrom(convert.timestamp(status.created_at))
        response.schedule.CopyFrom(
            convert.rotation_status_to_proto(self._admin.rotation_status(caller))
        )
        return response


class AuditServicer(pb_grpc.AuditServiceServicer):
    def __init__(
        self, reader: AuditReader, *, trust_metadata: bool = False, seal: SealState = NEVER_SEALED
    ) -> None:
        self._reader = reader
        self.trust_metadata = trust_metadata
        self.seal = seal
        self.on_auth_failure: AuthFailureHook = _no_hook
        self.identity: Callable[[], IdentityRules] = _cn_identity

    @rpc
    def ListEvents(  # noqa: N802
        self, caller: str, request: pb.ListEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListEventsResponse:
        events, next_token = self._reader.list_events(
            caller,
            subject_id=request.subject_id,
            event_caller=request.caller,
            action=convert.audit_action_filter(request.action),
            start=request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None,
            end=request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListEventsResponse(
            events=[convert.event_to_proto(e) for e in events], next_page_token=next_token
        )

    @rpc
    def VerifyChain(  # noqa: N802
        self, caller: str, request: pb.VerifyChainRequest, context: grpc.ServicerContext
    ) -> pb.VerifyChainResponse:
        check = self._reader.verify(
            caller, [(anchor.sequence, anchor.hash) for anchor in request.anchors]
        )
        return pb.VerifyChainResponse(
            ok=check.ok,
            events_checked=check.events_checked,
            first_bad_position=check.first_bad_position,
            problem=check.problem,
            anchors_checked=check.anchors_checked,
        )
