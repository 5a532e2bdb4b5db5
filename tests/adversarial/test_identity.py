"""A certificate must name exactly one caller: ambiguity is refused, not resolved.

The attacker holds certificates the vault's CA signed (a sloppy enrolment,
a mesh issuing certificates with odd subjects) and tries to make the server
pick an identity for it: two CNs (does it act as the first? the second?), or
no CN at all (it used to act as the caller ``""``). Each such call must be
refused UNAUTHENTICATED, before any use case runs, and audited as a refused,
unidentified call. With ``[identity] source = "uri_san"`` in the policy, a
SPIFFE-style URI SAN names the caller instead, and a certificate with two
mapped URIs is just as ambiguous.

Certificates are issued here with ``cryptography.x509`` from the dev CA the
server's ``--init`` made (``DIR/tls/ca.crt``, ``ca.key``), and presented over
real mutual TLS.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]

PHONE = pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567"))
PAY_TOKEN = pb.FieldValue(
    payment_token=pb.PaymentToken(provider="Stripe", token="pm_1Q2w3E4r5T6y7U8iF3A9")
)
MESH = "spiffe://shop.example/ns/prod/sa/"


# -- certificates from the dev CA ---------------------------------------------------------------
def issue(
    data_dir: Path,
    subject: Sequence[x509.RelativeDistinguishedName],
    uris: Sequence[str] = (),
) -> tuple[bytes, bytes]:
    """A client certificate the server's own CA signed: (certificate PEM, key PEM)."""
    tls = data_dir / "tls"
    ca_cert = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(list(subject)))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if uris:
        builder = builder.add_extension(
            # An empty subject needs its SAN critical (RFC 5280 4.2.1.6).
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=not subject,
        )
    certificate = builder.sign(ca_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def rdn(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.RelativeDistinguishedName:
    return x509.RelativeDistinguishedName([x509.NameAttribute(o, v) for o, v in attributes])


def cn(name: str) -> x509.RelativeDistinguishedName:
    return rdn((NameOID.COMMON_NAME, name))


ORG = rdn((NameOID.ORGANIZATION_NAME, "shop.example"))


def client_with(server: VaultServer, certificate: tuple[bytes, bytes]) -> VaultClient:
    return VaultClient(
        server.target,
        ca_cert=(server.data_dir / "tls" / "ca.crt").read_bytes(),
        client_cert=certificate[0],
        client_key=certificate[1],
    )


def put_phone(client: VaultClient, subject_id: str) -> pb.PutFieldResponse:
    return client.vault.PutField(
        pb.PutFieldRequest(subject_id=subject_id, field="phone", value=PHONE), timeout=30
    )


def refused_events(server: VaultServer, rpc: str) -> list[pb.AuditEvent]:
    """Audit events of refused, unidentified calls of ``rpc`` (read as admin).

    They are AUDIT_ACTION_AUTHENTICATE events whose detail starts with the RPC's name.
    """
    events = server.client("admin").audit.ListEvents(
        pb.ListEventsRequest(action=pb.AUDIT_ACTION_AUTHENTICATE, page_size=1000)
    )
    return [
        e
        for e in events.events
        if e.caller == ""
        and e.outcome == pb.AUDIT_OUTCOME_DENIED
        and e.status_code == "UNAUTHENTICATED"
        and e.detail.startswith(f"{rpc}: ")
    ]


# -- one common name, exactly -------------------------------------------------------------------
AMBIGUOUS_SUBJECTS = {
    # Which one would it be? The old server took the first.
    "two-cns": [cn("registration"), cn("admin")],
    "two-cns-one-rdn": [rdn((NameOID.COMMON_NAME, "admin"), (NameOID.COMMON_NAME, "registration"))],
    "same-cn-twice": [cn("registration"), cn("registration")],
    # No name at all: the old server ran the call as caller "".
    "no-cn": [ORG],
}


@pytest.mark.parametrize("subject", AMBIGUOUS_SUBJECTS.values(), ids=AMBIGUOUS_SUBJECTS.keys())
def test_a_certificate_naming_no_caller_or_several_is_refused_and_audited(
    vault_server: VaultServer, subject: list[x509.RelativeDistinguishedName]
) -> None:
    subject_id = f"id-{uuid.uuid4()}"
    before = len(refused_events(vault_server, "PutField"))
    with client_with(vault_server, issue(vault_server.data_dir, subject)) as client:
        with pytest.raises(grpc.RpcError) as refused:
            put_phone(client, subject_id)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "common name" in (refused.value.details() or "")
    for name in ("registration", "admin"):  # the message names no claimed identity
        assert name not in (refused.value.details() or "")

    events = refused_events(vault_server, "PutField")
    assert len(events) == before + 1
    assert "common name" in events[-1].detail
    # Nothing ran as anyone: the subject was never written.
    with pytest.raises(grpc.RpcError) as missing:
        vault_server.client("privacy-desk").vault.ListFields(
            pb.ListFieldsRequest(subject_id=subject_id)
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_certificate_with_its_one_cn_still_works(vault_server: VaultServer) -> None:
    certificate = issue(vault_server.data_dir, [ORG, cn("registration")])
    with client_with(vault_server, certificate) as client:
        assert put_phone(client, f"id-{uuid.uuid4()}").view.token


# -- identity from a URI SAN (SPIFFE) -----------------------------------------------------------
@pytest.fixture(scope="module")
def mesh_server(
    tmp_path_factory: pytest.TempPathFactory,
    run_vault: RunVault,
    start_vault_server: type[VaultServer],
) -> Iterator[VaultServer]:
    data_dir = tmp_path_factory.mktemp("mesh") / "vault"
    done = run_vault("init", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    policy = data_dir / "policy.toml"
    policy.write_text(
        policy.read_text()
        + "\n[identity]\n"
        + 'source = "uri_san"\n'
        + f'uri_prefix = "{MESH}"\n'
        + 'uris = { "spiffe://shop.example/ns/ops/sa/dpo" = "privacy-desk" }\n'
    )
    server = start_vault_server(data_dir, init=False)
    yield server
    assert server.stop() == 0, server.output


def test_a_mapped_uri_san_names_the_caller(mesh_server: VaultServer) -> None:
    subject_id = f"id-{uuid.uuid4()}"
    checkout = issue(mesh_server.data_dir, [], uris=[f"{MESH}checkout"])
    with client_with(mesh_server, checkout) as client:
        client.vault.PutField(
            pb.PutFieldRequest(subject_id=subject_id, field="payment_token.stripe", value=PAY_TOKEN)
        )
        # It is checkout and nobody else: a phone is registration's to put.
        with pytest.raises(grpc.RpcError) as denied:
            put_phone(client, subject_id)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    dpo = issue(mesh_server.data_dir, [ORG], uris=["spiffe://shop.example/ns/ops/sa/dpo"])
    with client_with(mesh_server, dpo) as client:
        read = client.vault.GetField(
            pb.GetFieldRequest(
                subject_id=subject_id,
                field="payment_token.stripe",
                view=pb.VIEW_PLAINTEXT,
                purpose="dsar",
            )
        )
        assert read.value.payment_token.token == "pm_1Q2w3E4r5T6y7U8iF3A9"

    history = issue(mesh_server.data_dir, [], uris=[f"{MESH}admin"])
    with client_with(mesh_server, history) as admin:
        page = admin.audit.ListEvents(pb.ListEventsRequest(subject_id=subject_id, page_size=100))
    assert {e.caller for e in page.events} >= {"checkout", "privacy-desk"}


MESH_AMBIGUOUS = {
    # Two mapped URIs: checkout or privacy-desk?
    "two-mapped-uris": ([], [f"{MESH}checkout", "spiffe://shop.example/ns/ops/sa/dpo"]),
    "two-prefixed-uris": ([], [f"{MESH}checkout", f"{MESH}registration"]),
    # Under uri_san a CN names nobody, and an unmapped URI neither.
    "cn-only": ([cn("admin")], []),
    "unmapped-uri": ([cn("admin")], ["spiffe://evil.example/ns/prod/sa/admin"]),
    "nested-path": ([], [f"{MESH}checkout/admin"]),
}


@pytest.mark.parametrize("subject, uris", MESH_AMBIGUOUS.values(), ids=MESH_AMBIGUOUS.keys())
def test_a_certificate_with_no_mapped_uri_or_several_is_refused_and_audited(
    mesh_server: VaultServer, subject: list[x509.RelativeDistinguishedName], uris: list[str]
) -> None:
    admin = issue(mesh_server.data_dir, [], uris=[f"{MESH}admin"])

    def refused_count() -> int:
        with client_with(mesh_server, admin) as client:
            page = client.audit.ListEvents(
                pb.ListEventsRequest(action=pb.AUDIT_ACTION_AUTHENTICATE, page_size=1000)
            )
        return sum(
            1
            for e in page.events
            if e.caller == ""
            and e.status_code == "UNAUTHENTICATED"
            and e.detail.startswith("GetField: ")
        )

    before = refused_count()
    with client_with(mesh_server, issue(mesh_server.data_dir, subject, uris=uris)) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.vault.GetField(pb.GetFieldRequest(subject_id="s-1", field="phone"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "URI SAN" in (refused.value.details() or "")
    assert refused_count() == before + 1
