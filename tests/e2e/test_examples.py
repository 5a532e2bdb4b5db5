"""The example callers in clients/ work against the real server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from clients import checkout, registration

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e


def test_registration_example_finds_an_existing_phone(
    vault_server: VaultServer, subject_id: str
) -> None:
    client = vault_server.client("registration")
    masked = registration.register(client, subject_id, "+372 5123 9876", "Jane.Doe@Example.COM")
    assert masked == {"phone": "+372 **** **76", "email": "J***@example.com"}
    assert registration.phone_taken(client, "0037251239876")
    # The idempotency keys make a retried registration harmless.
    assert registration.register(client, subject_id, "+372 5123 9876", "Jane.Doe@Example.COM") == (
        masked
    )


def test_checkout_example_charges_with_the_provider_token(
    vault_server: VaultServer, subject_id: str
) -> None:
    client = vault_server.client("checkout")
    view = checkout.add_payment_method(client, subject_id, "stripe", "pm_1Nexamplef3a9")
    assert view.masked == "stripe ****f3a9"
    assert checkout.charge(client, view.token) == "pm_1Nexamplef3a9"
    # Any other caller is refused the exchange.
    with pytest.raises(grpc.RpcError) as refused:
        checkout.charge(vault_server.client("registration"), view.token)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
