"""``[identity]`` in policy.toml: where a certificate's one caller name comes from.

A mistake here hands an identity to the wrong caller, so every doubtful
setting is refused at load time with the place named.
"""

from __future__ import annotations

import pytest

from vault.policy import DEFAULT_POLICY_TOML, Policy, PolicyError
from vault.policy.identity import CN_IDENTITY, IdentitySource

MESH = "spiffe://shop.example/ns/prod/sa/"


def with_identity(section: str) -> Policy:
    return Policy.from_toml(DEFAULT_POLICY_TOML + "\n[identity]\n" + section)


def test_without_a_section_the_caller_is_the_certificates_common_name() -> None:
    assert Policy.from_toml(DEFAULT_POLICY_TOML).identity == CN_IDENTITY
    assert with_identity('source = "cn"\n').identity == CN_IDENTITY


def test_uri_sans_map_by_exact_id_or_by_prefix() -> None:
    rules = with_identity(
        'source = "uri_san"\n'
        f'uri_prefix = "{MESH}"\n'
        'uris = { "spiffe://shop.example/ns/ops/sa/dpo" = "privacy-desk" }\n'
    ).identity
    assert rules.source is IdentitySource.URI_SAN
    assert rules.caller_for_uri(f"{MESH}checkout") == "checkout"
    assert rules.caller_for_uri("spiffe://shop.example/ns/ops/sa/dpo") == "privacy-desk"
    # Only a plain caller name may follow the prefix; anything else names nobody.
    for uri in (
        f"{MESH}",
        f"{MESH}checkout/admin",
        f"{MESH}Checkout",
        f"{MESH}checkout?x=1",
        "spiffe://shop.example/ns/prod/sa",
        "spiffe://evil.example/ns/prod/sa/checkout",
        f"{MESH.upper()}checkout",
    ):
        assert rules.caller_for_uri(uri) is None, uri


@pytest.mark.parametrize(
    ("section", "place"),
    [
        ('source = "dns"\n', "identity.source"),
        ('sorce = "cn"\n', "identity.sorce"),
        ('source = "uri_san"\n', "needs uris or uri_prefix"),
        (f'uri_prefix = "{MESH}"\n', 'need source = "uri_san"'),
        ('source = "uri_san"\nuri_prefix = "spiffe://shop.example/sa"\n', "identity.uri_prefix"),
        ('source = "uri_san"\nuri_prefix = "shop/sa/"\n', "identity.uri_prefix"),
        ('source = "uri_san"\nuris = { "spiffe://a/b" = "nobody" }\n', "identity.uris"),
        ('source = "uri_san"\nuris = { "not a uri" = "admin" }\n', "identity.uris"),
        ('source = "uri_san"\nuris = { "spiffe://a/b" = 7 }\n', "identity.uris"),
    ],
)
def test_a_doubtful_identity_setting_is_refused_naming_its_place(section: str, place: str) -> None:
    with pytest.raises(PolicyError, match=place.replace("?", r"\?").replace(".", r"\.")):
        with_identity(section)
