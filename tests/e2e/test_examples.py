"""The example callers in clients/examples/ (built on pii-vault-client) against the real server.

``tests/client/test_fresh_venv.py`` runs them again as scripts in a venv that holds
only the client distribution.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pii_vault_client import PolicyDenied, VaultClient

from clients.examples import checkout, registration

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "clients" / "examples"


def light_client(server: VaultServer, caller: str) -> VaultClient:
    return VaultClient.for_caller(server.data_dir, caller, server.target)


def test_registration_example_finds_an_existing_phone(
    vault_server: VaultServer, subject_id: str
) -> None:
    with light_client(vault_server, "registration") as client:
        masked = registration.register(client, subject_id, "+372 5123 9876", "Jane.Doe@Example.COM")
        assert masked == {"phone": "+372 **** **76", "email": "J***@example.com"}
        assert registration.phone_taken(client, "0037251239876")
        # The idempotency keys make a retried registration harmless.
        again = registration.register(client, subject_id, "+372 5123 9876", "Jane.Doe@Example.COM")
        assert again == masked


def test_checkout_example_stores_a_card_and_a_token_and_pays_with_the_token(
    vault_server: VaultServer, subject_id: str
) -> None:
    with light_client(vault_server, "checkout") as client:
        card = checkout.add_card(client, subject_id, "4242424242424242", 12, 2030, "Jane Doe")
        assert card.masked == "VISA **** 4242 (12/30)"
        view = checkout.add_payment_method(client, subject_id, "stripe", "pm_1Nexamplef3a9")
        assert view.masked == "stripe ****f3a9"
        assert checkout.vault_token(client, subject_id, "stripe") == view.token
        assert checkout.pay(client, subject_id, "stripe") == "pm_1Nexamplef3a9"
    # Any other caller is refused the exchange, with a reason.
    with light_client(vault_server, "registration") as other, pytest.raises(PolicyDenied) as no:
        checkout.charge(other, view.token)
    assert no.value.reason == "POLICY_DENIED"


def run_example(name: str, server: VaultServer, *args: str) -> subprocess.CompletedProcess[str]:
    connection = ("--data-dir", str(server.data_dir), "--target", server.target)
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *connection, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_examples_run_as_scripts(vault_server: VaultServer, subject_id: str) -> None:
    phone = "+372 5123 5511"
    done = run_example("registration.py", vault_server, "--account", subject_id, "--phone", phone)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["masked"]["phone"] == "+372 **** **11"
    again = run_example("registration.py", vault_server, "--phone", phone)
    assert json.loads(again.stdout) == {"account": None, "already_registered": True}

    paid = run_example("checkout.py", vault_server, "--account", subject_id)
    assert paid.returncode == 0, paid.stderr
    assert json.loads(paid.stdout) == {
        "card": "VISA **** 4242 (12/30)",
        "payment_token": "stripe ****f3a9",
        "charged": True,
    }
