"""One client certificate, one caller: ``vault.transport.identity`` without a server."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vault.errors import Unauthenticated
from vault.policy.identity import CN_IDENTITY, IdentityRules, IdentitySource
from vault.transport.identity import caller_from_certificate

MESH = "spiffe://shop.example/ns/prod/sa/"
SPIFFE = IdentityRules(
    IdentitySource.URI_SAN,
    MappingProxyType({"spiffe://shop.example/ns/ops/sa/dpo": "privacy-desk"}),
    MESH,
)
KEY = ec.generate_private_key(ec.SECP256R1())


# ``_validate=False``: a hostile CA-signed certificate need not respect length limits.
def certificate(
    names: Sequence[Sequence[tuple[x509.ObjectIdentifier, str]]], uris: Sequence[str] = ()
) -> bytes:
    now = datetime.now(UTC)
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(o, v, _validate=False) for o, v in rdn]
            )
            for rdn in names
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
        .public_key(KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


CN = NameOID.COMMON_NAME
ORG = (NameOID.ORGANIZATION_NAME, "shop.example")


def test_the_one_common_name_is_the_caller() -> None:
    assert (
        caller_from_certificate(certificate([[ORG], [(CN, "checkout")]]), CN_IDENTITY) == "checkout"
    )


@pytest.mark.parametrize(
    "names",
    [
        [[(CN, "registration")], [(CN, "admin")]],
        [[(CN, "admin"), (CN, "registration")]],
        [[(CN, "admin")], [(CN, "admin")]],
        [[ORG]],
        [],
        [[(CN, "")]],
        [[(CN, " admin")]],
        [[(CN, "admin\n")]],
        [[(CN, "a" * 129)]],
    ],
    ids=[
        "two-rdns",
        "one-rdn",
        "same-twice",
        "no-cn",
        "empty-subject",
        "empty-cn",
        "padded",
        "newline",
        "too-long",
    ],
)
@pytest.mark.filterwarnings("ignore:Attribute's length")
def test_no_caller_or_several_is_unauthenticated_and_named_by_count_only(
    names: list[list[tuple[x509.ObjectIdentifier, str]]],
) -> None:
    with pytest.raises(Unauthenticated) as refused:
        caller_from_certificate(certificate(names), CN_IDENTITY)
    assert "admin" not in refused.value.message and "registration" not in refused.value.message


def test_under_uri_san_exactly_one_mapped_uri_names_the_caller() -> None:
    assert caller_from_certificate(certificate([], [f"{MESH}checkout"]), SPIFFE) == "checkout"
    # Unmapped URIs beside the mapped one are someone else's business.
    mixed = certificate([[(CN, "admin")]], ["https://shop.example/", f"{MESH}checkout"])
    assert caller_from_certificate(mixed, SPIFFE) == "checkout"
    dpo = certificate([], ["spiffe://shop.example/ns/ops/sa/dpo"])
    assert caller_from_certificate(dpo, SPIFFE) == "privacy-desk"


@pytest.mark.parametrize(
    ("names", "uris"),
    [
        ([], [f"{MESH}checkout", f"{MESH}registration"]),
        ([], [f"{MESH}checkout", f"{MESH}checkout"]),
        ([], [f"{MESH}checkout", "spiffe://shop.example/ns/ops/sa/dpo"]),
        ([[(CN, "admin")]], []),
        ([], ["spiffe://evil.example/ns/prod/sa/admin"]),
    ],
    ids=["two-prefixed", "same-twice", "prefix-and-exact", "cn-only", "unmapped"],
)
def test_under_uri_san_no_mapped_uri_or_several_is_unauthenticated(
    names: list[list[tuple[x509.ObjectIdentifier, str]]], uris: list[str]
) -> None:
    with pytest.raises(Unauthenticated, match="URI SAN"):
        caller_from_certificate(certificate(names, uris), SPIFFE)


def test_an_unreadable_certificate_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated, match="cannot be read"):
        caller_from_certificate(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", CN_IDENTITY
        )


def test_a_certificate_is_read_again_under_new_rules_and_a_refusal_is_remembered() -> None:
    # Both the name and the refusal are kept per rules; new rules (a reload) read anew.
    pem = certificate([[(CN, "admin")]], [f"{MESH}checkout"])
    assert caller_from_certificate(pem, CN_IDENTITY) == "admin"
    assert caller_from_certificate(pem, CN_IDENTITY) == "admin"
    assert caller_from_certificate(pem, SPIFFE) == "checkout"
    assert caller_from_certificate(pem, CN_IDENTITY) == "admin"
    two = certificate([[(CN, "admin")], [(CN, "registration")]])
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="common name"):
            caller_from_certificate(two, CN_IDENTITY)
