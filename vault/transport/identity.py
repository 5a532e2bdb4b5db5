"""The caller a verified client certificate names: exactly one, or nobody.

TLS has already checked the certificate against the vault's CA; what is
left is to read the one name in it. gRPC's ``x509_common_name`` property is
no help there: for a subject with two CNs it hands over one of them, and for
a subject without one nothing, which earlier became the caller ``""``. So
the certificate itself (``x509_pem_cert``) is parsed here, and anything but
exactly one name -- two CNs (in one RDN or in two), no CN, an empty one,
several URI SANs that map to callers, none that does -- raises
``Unauthenticated``, which the servicers audit before they answer. The
message names counts and kinds, never the names themselves: they are the
claimant's to choose.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from vault.errors import Unauthenticated
from vault.policy.identity import IdentityRules, IdentitySource

# Longer than any caller name the policy can hold; a longer one names nobody.
MAX_CALLER_NAME = 128


# Parsing a certificate costs about 25 us, a tenth of a masked read: the answer
# for a (certificate, rules) pair is kept, bounded, and forgotten with the rules.
_CACHE_LIMIT = 1024
_cache: tuple[IdentityRules, dict[bytes, str | Unauthenticated]] | None = None


def caller_from_certificate(pem: bytes, rules: IdentityRules) -> str:
    """The one caller ``pem`` (a verified client certificate) names under ``rules``.

    A refusal is remembered like a name, so a bad certificate presented again
    is refused again without being parsed again. Each thread works on the one
    (rules, answers) pair it took, so an answer worked out under rules that a
    policy reload replaced never lands among the new rules' answers.
    """
    global _cache
    taken = _cache
    if taken is None or taken[0] is not rules:
        taken = _cache = (rules, {})  # a policy reload may map names anew
    answers = taken[1]
    known = answers.get(pem)
    if known is None:
        try:
            known = _read_caller(pem, rules)
        except Unauthenticated as refusal:
            known = refusal
        if len(answers) >= _CACHE_LIMIT:
            answers.clear()
        answers[pem] = known
    if isinstance(known, Unauthenticated):
        raise Unauthenticated(known.message)
    return known


def _read_caller(pem: bytes, rules: IdentityRules) -> str:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Unauthenticated("the client certificate cannot be read") from None
    if rules.source is IdentitySource.URI_SAN:
        return _from_uri_sans(certificate, rules)
    return _from_common_name(certificate)


def _from_common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise Unauthenticated(
            f"the client certificate must name exactly one common name (it has {len(names)})"
        )
    return _checked(names[0].value, "common name")


def _from_uri_sans(certificate: x509.Certificate, rules: IdentityRules) -> str:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    named = [caller for caller in map(rules.caller_for_uri, uris) if caller is not None]
    if len(named) != 1:
        raise Unauthenticated(
            "the client certificate must carry exactly one URI SAN that the policy maps "
            f"to a caller (it has {len(named)} of {len(uris)} URI SANs)"
        )
    return _checked(named[0], "URI SAN")


def _checked(name: str | bytes, kind: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_CALLER_NAME:
        raise Unauthenticated(f"the client certificate's {kind} is not a caller name")
    if not name.isprintable() or name != name.strip():
        raise Unauthenticated(f"the client certificate's {kind} is not a caller name")
    return name
