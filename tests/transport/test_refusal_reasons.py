"""A refused call says why in its reason: the vault is sealed, or the server is draining.

Both answer UNAVAILABLE (retry); the reason tells a client whether to back off
(``SEALED``: the key provider is out of reach) or go to another replica at once
(``DRAINING``: this server is shutting down). The drain window is too short to
hit on demand over a socket, so the refusal itself is checked here.
"""

from __future__ import annotations

from google.rpc import error_details_pb2

from vault.transport.servicer import NEVER_SEALED, ServingGate, _refusal
from vault.transport.status import ERROR_DOMAIN, status_proto


class _Sealed:
    sealed = True


def reason_of(gate: object) -> str:
    status = status_proto(_refusal(gate))  # type: ignore[arg-type]
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            assert info.domain == ERROR_DOMAIN
            return info.reason
    raise AssertionError("no ErrorInfo")


def test_a_sealed_vault_says_sealed() -> None:
    assert reason_of(_Sealed()) == "SEALED"


def test_a_draining_server_says_draining() -> None:
    gate = ServingGate(NEVER_SEALED)
    gate.draining = True
    assert reason_of(gate) == "DRAINING"
