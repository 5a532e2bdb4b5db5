"""The Transit key provider against a real OpenBao dev server (``openbao.py``), no mocks.

One server serves the whole process (started once, about a second); every
test makes its own Transit key. What is checked is what the vault relies on:
a wrap opens only under its context, tampering is ``DataLoss``, rotation is
seen by every process and retirement destroys the key material in Transit;
the provider fails closed (``Unavailable``, never naming the token) while
the server is away, sealed or refuses the token, and recovers by itself;
and the token the operator hands the vault needs only the shipped policy.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import hvac
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from openbao import MOUNT, OpenBao, TcpProxy, start_openbao

from vault.crypto.envelope import subject_key_context
from vault.errors import DataLoss, FailedPrecondition, NotFound, Unavailable, VaultError
from vault.keys import transit
from vault.keys.provider import MasterKeyState, WrappedKey
from vault.keys.transit import (
    TRANSIT_POLICY_TEMPLATE,
    TRANSIT_SIGNER_POLICY_TEMPLATE,
    TransitKeyProvider,
    TransitSigner,
    create_master_key,
    create_signing_key,
    parse_transit_uri,
    transit_policy,
)
from vault.keys.uri import provider_from_uri

KEY = bytes(range(32))
CONTEXT = subject_key_context("subject-1", "key-1")
OTHER_CONTEXT = subject_key_context("subject-2", "key-1")


@pytest.fixture
def provider(transit_uri: str) -> TransitKeyProvider:
    create_master_key(transit_uri)
    return TransitKeyProvider(transit_uri)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _raises_unavailable(call: Callable[[], object], *expected: str) -> Unavailable:
    with pytest.raises(Unavailable) as caught:
        call()
    for text in expected:
        assert text in caught.value.message
    return caught.value


# -- what Transit itself does ----------------------------------------------------------------
def test_openbao_binds_aes256_gcm96_ciphertexts_to_their_associated_data(
    openbao: OpenBao, transit_key: str
) -> None:
    client = openbao.client()
    client.secrets.transit.create_key(transit_key, key_type="aes256-gcm96", mount_point=MOUNT)
    encrypted = client.write_data(
        f"{MOUNT}/encrypt/{transit_key}",
        data={"plaintext": _b64(KEY), "associated_data": _b64(b"context a")},
    )
    ciphertext = encrypted["data"]["ciphertext"]

    def decrypt(**extra: str) -> object:
        return client.write_data(
            f"{MOUNT}/decrypt/{transit_key}", data={"ciphertext": ciphertext, **extra}
        )

    opened = decrypt(associated_data=_b64(b"context a"))
    assert base64.b64decode(opened["data"]["plaintext"]) == KEY  # type: ignore[index]
    for extra in ({"associated_data": _b64(b"context b")}, {}):
        with pytest.raises(hvac.exceptions.InvalidRequest, match="message authentication failed"):
            decrypt(**extra)


# -- wrap and unwrap -----------------------------------------------------------------------
def test_a_key_wrapped_in_transit_unwraps_with_its_context(
    provider: TransitKeyProvider, transit_key: str
) -> None:
    wrapped = provider.wrap(KEY, CONTEXT)
    assert wrapped.kek_id == f"transit:{MOUNT}/{transit_key}"
    assert wrapped.kek_version == 1 == provider.current_version()
    assert wrapped.ciphertext.startswith(b"vault:v1:")
    assert KEY not in wrapped.ciphertext and _b64(KEY).encode() not in wrapped.ciphertext
    assert provider.unwrap(wrapped, CONTEXT) == KEY
    assert provider.wrap(KEY, CONTEXT).ciphertext != wrapped.ciphertext


def test_provider_from_uri_opens_a_transit_provider(transit_uri: str) -> None:
    create_master_key(transit_uri)
    provider = provider_from_uri(transit_uri)
    assert isinstance(provider, TransitKeyProvider)
    assert provider.unwrap(provider.wrap(KEY, CONTEXT), CONTEXT) == KEY


def test_a_wrap_under_another_context_is_data_loss(provider: TransitKeyProvider) -> None:
    wrapped = provider.wrap(KEY, CONTEXT)
    with pytest.raises(DataLoss, match="failed authentication"):
        provider.unwrap(wrapped, OTHER_CONTEXT)


def test_a_wrap_moved_to_another_master_key_of_the_same_mount_is_not_opened(
    openbao: OpenBao, provider: TransitKeyProvider, transit_key: str
) -> None:
    other_uri = openbao.uri(transit_key + "-other")
    create_master_key(other_uri)
    other = TransitKeyProvider(other_uri)
    wrapped = provider.wrap(KEY, CONTEXT)
    with pytest.raises(Unavailable, match="another master key"):
        other.unwrap(wrapped, CONTEXT)
    # Relabelled as the other key's, the associated data no longer matches.
    relabelled = WrappedKey(other.kek_id, wrapped.kek_version, wrapped.ciphertext)
    with pytest.raises(DataLoss):
        other.unwrap(relabelled, CONTEXT)


def _flip(ciphertext: bytes, position: int) -> bytes:
    prefix, _, body = ciphertext.decode().rpartition(":")
    raw = bytearray(base64.b64decode(body))
    raw[position] ^= 0x01
    return f"{prefix}:{_b64(bytes(raw))}".encode()


@pytest.mark.parametrize("position", [0, 12, -1], ids=["nonce", "ciphertext", "tag"])
def test_a_tampered_wrap_is_data_loss(provider: TransitKeyProvider, position: int) -> None:
    wrapped = provider.wrap(KEY, CONTEXT)
    tampered = WrappedKey(wrapped.kek_id, wrapped.kek_version, _flip(wrapped.ciphertext, position))
    with pytest.raises(DataLoss, match="failed authentication"):
        provider.unwrap(tampered, CONTEXT)


def test_a_wrap_whose_version_was_altered_is_data_loss(provider: TransitKeyProvider) -> None:
    wrapped = provider.wrap(KEY, CONTEXT)
    provider.rotate()
    body = wrapped.ciphertext.removeprefix(b"vault:v1:")
    cases = [
        WrappedKey(wrapped.kek_id, 2, wrapped.ciphertext),  # the column says 2, Transit's text 1
        WrappedKey(wrapped.kek_id, 2, b"vault:v2:" + body),  # opened under version 2's key
        WrappedKey(wrapped.kek_id, 1, b"vault:v1:" + body[:10]),  # truncated
        WrappedKey(wrapped.kek_id, 1, b"not a transit ciphertext"),
    ]
    for case in cases:
        with pytest.raises(DataLoss):
            provider.unwrap(case, CONTEXT)


def test_a_wrap_under_a_version_transit_never_made_is_unavailable(
    provider: TransitKeyProvider,
) -> None:
    wrapped = provider.wrap(KEY, CONTEXT)
    future = WrappedKey(wrapped.kek_id, 7, wrapped.ciphertext.replace(b"vault:v1:", b"vault:v7:"))
    _raises_unavailable(lambda: provider.unwrap(future, CONTEXT), "version 7 is unknown")


# -- rotation and retirement -----------------------------------------------------------------
def test_rotation_keeps_old_wraps_readable_and_wraps_new_keys_under_the_new_version(
    provider: TransitKeyProvider,
) -> None:
    old = provider.wrap(KEY, CONTEXT)
    info = provider.rotate()
    assert (info.version, info.state, info.kek_id) == (2, MasterKeyState.ACTIVE, old.kek_id)
    assert info.created_at.startswith(str(time.gmtime().tm_year))
    assert provider.current_version() == 2
    new = provider.wrap(KEY, CONTEXT)
    assert new.kek_version == 2 and new.ciphertext.startswith(b"vault:v2:")
    assert provider.unwrap(old, CONTEXT) == KEY == provider.unwrap(new, CONTEXT)
    assert [(v.version, v.state) for v in provider.versions()] == [(1, "active"), (2, "active")]


def test_two_providers_sharing_a_key_see_each_others_rotation_at_once(
    transit_uri: str,
) -> None:
    create_master_key(transit_uri)
    first, second = TransitKeyProvider(transit_uri), TransitKeyProvider(transit_uri)
    assert second.current_version() == 1
    assert first.rotate().version == 2
    assert second.current_version() == 2
    wrapped = second.wrap(KEY, CONTEXT)
    assert wrapped.kek_version == 2
    assert first.unwrap(wrapped, CONTEXT) == KEY
    assert second.rotate().version == 3
    assert first.wrap(KEY, CONTEXT).kek_version == 3


def test_retire_really_destroys_the_version_in_transit(
    openbao: OpenBao, provider: TransitKeyProvider, transit_key: str
) -> None:
    old = provider.wrap(KEY, CONTEXT)
    provider.rotate()
    kept = provider.wrap(KEY, CONTEXT)

    info = provider.retire(1)

    assert (info.version, info.state) == (1, MasterKeyState.RETIRED)
    _raises_unavailable(lambda: provider.unwrap(old, CONTEXT), "version 1 is retired")
    assert provider.unwrap(kept, CONTEXT) == KEY
    assert [(v.version, v.state) for v in provider.versions()] == [(1, "retired"), (2, "active")]
    # Transit reports the version trimmed, and not even the root token brings it back.
    described = openbao.key_info(transit_key)
    assert described["min_available_version"] == 2
    assert described["min_decryption_version"] == 2
    assert "1" not in described["keys"]
    assert described["deletion_allowed"] is False
    with pytest.raises(hvac.exceptions.InvalidRequest, match="min available version"):
        openbao.client().secrets.transit.update_key_configuration(
            transit_key, min_decryption_version=1, mount_point=MOUNT
        )
    # Retiring it again changes nothing; new wraps still work.
    assert provider.retire(1).state == MasterKeyState.RETIRED
    assert provider.unwrap(provider.wrap(KEY, CONTEXT), CONTEXT) == KEY


def test_transit_retires_oldest_first_so_a_younger_version_is_refused(
    provider: TransitKeyProvider,
) -> None:
    provider.rotate()
    provider.rotate()
    with pytest.raises(FailedPrecondition, match="retire those first") as caught:
        provider.retire(2)
    assert "versions 1 to 1" in caught.value.message
    provider.retire(1)
    provider.retire(2)
    assert [v.state for v in provider.versions()] == ["retired", "retired", "active"]


def test_retiring_the_current_or_an_unknown_version_is_refused(
    provider: TransitKeyProvider,
) -> None:
    with pytest.raises(FailedPrecondition, match="is current; rotate before retiring it"):
        provider.retire(1)
    for version in (0, 2, 99):
        with pytest.raises(NotFound, match=f"version {version} does not exist"):
            provider.retire(version)
    assert provider.versions()[0].state == MasterKeyState.ACTIVE


def test_retire_finishes_a_retirement_that_stopped_before_the_trim(
    openbao: OpenBao, provider: TransitKeyProvider, transit_key: str
) -> None:
    provider.rotate()
    openbao.client().write_data(
        f"{MOUNT}/keys/{transit_key}/config",
        data={"min_decryption_version": 2, "min_encryption_version": 2},
    )
    # Hidden but not destroyed: already reported retired, and retire trims it.
    assert provider.versions()[0].state == MasterKeyState.RETIRED
    provider.retire(1)
    assert openbao.key_info(transit_key)["min_available_version"] == 2


# -- the audit key ---------------------------------------------------------------------------
def test_the_audit_key_is_stable_across_rotation_and_instances(
    openbao: OpenBao, transit_uri: str, transit_key: str
) -> None:
    create_master_key(transit_uri)
    first = TransitKeyProvider(transit_uri)
    key = first.audit_key()
    assert len(key) == 32
    first.rotate()
    first.retire(1)
    assert TransitKeyProvider(transit_uri).audit_key() == key
    assert openbao.key_info(f"{transit_key}-audit")["type"] == "hmac"
    other_uri = openbao.uri(f"{transit_key}-b")
    create_master_key(other_uri)
    assert TransitKeyProvider(other_uri).audit_key() != key
    assert not first.adopts_unkeyed_audit_chain()
    first.close_unkeyed_audit_chain()


def test_a_missing_audit_key_is_unavailable(openbao: OpenBao, transit_key: str) -> None:
    openbao.client().secrets.transit.create_key(transit_key, mount_point=MOUNT)
    provider = TransitKeyProvider(openbao.uri(transit_key))
    _raises_unavailable(provider.audit_key, "computing the audit key", "not found")


# -- provisioning ----------------------------------------------------------------------------
def test_create_master_key_is_idempotent_and_makes_keys_that_never_leave(
    openbao: OpenBao, transit_uri: str, transit_key: str
) -> None:
    create_master_key(transit_uri)
    provider = TransitKeyProvider(transit_uri)
    wrapped, audit = provider.wrap(KEY, CONTEXT), provider.audit_key()
    create_master_key(transit_uri)
    assert provider.current_version() == 1
    assert provider.unwrap(wrapped, CONTEXT) == KEY
    assert TransitKeyProvider(transit_uri).audit_key() == audit
    for name, kind in ((transit_key, "aes256-gcm96"), (f"{transit_key}-audit", "hmac")):
        described = openbao.key_info(name)
        assert described["type"] == kind
        assert described["exportable"] is False
        assert described["allow_plaintext_backup"] is False
        assert described["deletion_allowed"] is False


def test_opening_a_key_that_does_not_exist_is_unavailable_naming_it(
    transit_uri: str, transit_key: str
) -> None:
    error = _raises_unavailable(
        lambda: TransitKeyProvider(transit_uri), f"transit/keys/{transit_key}"
    )
    assert "reading the master key" in error.message


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ({"key_type": "chacha20-poly1305"}, "of type chacha20-poly1305"),
        ({"exportable": True}, "exportable"),
        ({"allow_plaintext_backup": True}, "exportable"),
    ],
    ids=["wrong-type", "exportable", "plaintext-backup"],
)
def test_a_key_that_could_leave_transit_is_refused(
    openbao: OpenBao, transit_uri: str, transit_key: str, settings: dict[str, object], refusal: str
) -> None:
    openbao.client().secrets.transit.create_key(transit_key, mount_point=MOUNT, **settings)
    _raises_unavailable(lambda: TransitKeyProvider(transit_uri), refusal)
    with pytest.raises(FailedPrecondition, match=refusal):
        create_master_key(transit_uri)


def test_a_deletable_key_is_refused_until_deletion_is_disallowed_again(
    openbao: OpenBao, provider: TransitKeyProvider, transit_key: str
) -> None:
    transit_api = openbao.client().secrets.transit
    transit_api.update_key_configuration(transit_key, deletion_allowed=True, mount_point=MOUNT)
    _raises_unavailable(provider.check, "deletable")
    transit_api.update_key_configuration(transit_key, deletion_allowed=False, mount_point=MOUNT)
    provider.check()


def test_a_mount_path_with_slashes_works(openbao: OpenBao, transit_key: str) -> None:
    mount = f"team/{transit_key}/transit"
    openbao.client().sys.enable_secrets_engine("transit", path=mount)
    uri = openbao.uri("kek", mount=mount)
    create_master_key(uri)
    provider = TransitKeyProvider(uri)
    assert provider.kek_id == f"transit:{mount}/kek"
    assert provider.unwrap(provider.wrap(KEY, CONTEXT), CONTEXT) == KEY
    assert len(provider.audit_key()) == 32


# -- failing closed and recovering -----------------------------------------------------------
def test_a_sealed_server_is_unavailable_and_the_same_object_works_after_unseal(
    openbao: OpenBao, provider: TransitKeyProvider
) -> None:
    wrapped = provider.wrap(KEY, CONTEXT)
    openbao.seal()
    try:
        error = _raises_unavailable(provider.check, "is sealed", openbao.address)
        assert "reading the master key" in error.message
        _raises_unavailable(lambda: provider.wrap(KEY, CONTEXT), "sealed", "wrapping")
        _raises_unavailable(lambda: provider.unwrap(wrapped, CONTEXT), "sealed", "unwrapping")
        _raises_unavailable(provider.rotate, "sealed")
    finally:
        openbao.unseal()
    _eventually(provider.check)  # what the seal watcher does every second
    assert provider.unwrap(wrapped, CONTEXT) == KEY
    assert provider.unwrap(provider.wrap(KEY, CONTEXT), CONTEXT) == KEY


def _eventually(call: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
            return
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_server_gone_from_the_network_is_unavailable_until_it_is_back(
    openbao: OpenBao, tcp_proxy: TcpProxy, transit_uri: str, transit_key: str
) -> None:
    create_master_key(transit_uri)
    uri = transit_uri.replace(openbao.address.split("//")[1], f"127.0.0.1:{tcp_proxy.port}")
    provider = TransitKeyProvider(uri)
    wrapped = provider.wrap(KEY, CONTEXT)
    tcp_proxy.stop()
    error = _raises_unavailable(provider.check, "cannot be reached", f":{tcp_proxy.port}")
    assert "ConnectionError" in error.message
    _raises_unavailable(lambda: provider.unwrap(wrapped, CONTEXT), "cannot be reached")
    _raises_unavailable(lambda: TransitKeyProvider(uri), "cannot be reached")
    tcp_proxy.start()
    provider.check()
    assert provider.unwrap(wrapped, CONTEXT) == KEY


def test_a_server_that_stops_answering_times_out_as_unavailable(
    openbao: OpenBao, transit_uri: str
) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        uri = transit_uri.replace(openbao.address.split("//")[1], address)
        started = time.monotonic()
        error = _raises_unavailable(
            lambda: TransitKeyProvider(uri, timeouts=(0.5, 0.5)), "cannot be reached"
        )
        assert "ReadTimeout" in error.message
        assert time.monotonic() - started < 3
    assert transit.TIMEOUTS == (2.0, 5.0)


def test_a_revoked_token_is_unavailable_and_a_renewed_token_file_is_read_again(
    openbao: OpenBao, transit_key: str
) -> None:
    uri_with_root = openbao.uri(transit_key)
    create_master_key(uri_with_root)
    policy = f"pii-vault-{transit_key}"
    openbao.client().sys.create_or_update_acl_policy(policy, transit_policy(uri_with_root))
    token = openbao.new_token(policy)
    token_file = openbao.token_file(token)
    provider = TransitKeyProvider(openbao.uri(transit_key, token_file))
    wrapped = provider.wrap(KEY, CONTEXT)

    openbao.client().auth.token.revoke(token)

    for call in (provider.check, lambda: provider.unwrap(wrapped, CONTEXT)):
        error = _raises_unavailable(call, "refused the token", "permission denied")
        assert token not in _everything_about(error)
    # The operator writes a new token to the same file: the same object picks it up.
    token_file.write_text(openbao.new_token(policy) + "\n")
    assert provider.unwrap(wrapped, CONTEXT) == KEY


def _everything_about(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error.__context__)


def test_the_token_is_in_no_error_and_no_log_line(
    openbao: OpenBao, transit_key: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    token = openbao.new_token("root")
    uri = openbao.uri(transit_key, openbao.token_file(token))
    create_master_key(uri)
    provider = TransitKeyProvider(uri)
    wrapped = provider.wrap(KEY, CONTEXT)
    errors: list[VaultError] = []

    def collect(call: Callable[[], object]) -> None:
        with pytest.raises(VaultError) as caught:
            call()
        errors.append(caught.value)

    collect(lambda: provider.unwrap(wrapped, OTHER_CONTEXT))
    collect(lambda: provider.retire(1))
    collect(
        lambda: TransitKeyProvider(openbao.uri(transit_key + "-absent", openbao.token_file(token)))
    )
    openbao.seal()
    try:
        collect(provider.check)
    finally:
        openbao.unseal()
    _eventually(provider.check)
    openbao.client().auth.token.revoke(token)
    collect(lambda: provider.wrap(KEY, CONTEXT))
    leaky = tmp_path / "leaky-token"
    leaky.write_text(token)
    leaky.chmod(0o640)
    collect(lambda: TransitKeyProvider(openbao.uri(transit_key, leaky)))
    with pytest.raises(ValueError) as refused:
        parse_transit_uri(f"transit+http://127.0.0.1:1/transit/k?token={token}")
    errors_text = "".join(_everything_about(e) for e in [*errors, refused.value])
    assert len(errors) == 6
    assert token not in errors_text
    assert token not in caplog.text
    assert caplog.records  # urllib3 logged its requests, so the check saw something


def test_a_token_file_others_can_read_is_refused(
    openbao: OpenBao, provider: TransitKeyProvider, transit_key: str
) -> None:
    token_file = openbao.token_file()
    token_file.chmod(0o640)
    _raises_unavailable(
        lambda: TransitKeyProvider(openbao.uri(transit_key, token_file)), "chmod 600"
    )
    token_file.chmod(0o600)
    TransitKeyProvider(openbao.uri(transit_key, token_file)).check()


def test_without_a_token_file_the_token_comes_from_vault_token(
    openbao: OpenBao,
    provider: TransitKeyProvider,
    transit_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = openbao.uri(transit_key).split("?")[0]
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    _raises_unavailable(lambda: TransitKeyProvider(uri), "VAULT_TOKEN is empty or unset")
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    assert TransitKeyProvider(uri).unwrap(provider.wrap(KEY, CONTEXT), CONTEXT) == KEY


# -- threads and connections -----------------------------------------------------------------
def test_many_threads_share_one_provider_each_over_one_kept_alive_connection(
    openbao: OpenBao, tcp_proxy: TcpProxy, transit_uri: str
) -> None:
    create_master_key(transit_uri)
    uri = transit_uri.replace(openbao.address.split("//")[1], f"127.0.0.1:{tcp_proxy.port}")
    provider = TransitKeyProvider(uri)
    for _ in range(20):
        provider.unwrap(provider.wrap(KEY, CONTEXT), CONTEXT)
    assert tcp_proxy.accepted == 1  # the opening read and 40 calls, one connection

    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                key = os.urandom(32)
                context = subject_key_context(f"subject-{n}", f"key-{i}")
                assert provider.unwrap(provider.wrap(key, context), context) == key
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert tcp_proxy.accepted == 1 + 8


# -- the operator's policy -------------------------------------------------------------------
def test_the_module_docstring_shows_the_policy_it_ships() -> None:
    assert textwrap.indent(TRANSIT_POLICY_TEMPLATE, "    ") in str(transit.__doc__)


def test_a_token_with_only_the_shipped_policy_runs_the_provider_and_nothing_more(
    openbao: OpenBao, transit_key: str
) -> None:
    root_uri = openbao.uri(transit_key)
    create_master_key(root_uri)
    other = f"{transit_key}-neighbour"
    openbao.client().secrets.transit.create_key(other, mount_point=MOUNT)
    policy = f"pii-vault-{transit_key}"
    openbao.client().sys.create_or_update_acl_policy(policy, transit_policy(root_uri))
    token = openbao.new_token(policy)
    uri = openbao.uri(transit_key, openbao.token_file(token))

    provider = TransitKeyProvider(uri)  # read
    old = provider.wrap(KEY, CONTEXT)  # encrypt
    assert provider.rotate().version == 2  # rotate
    assert provider.unwrap(old, CONTEXT) == KEY  # decrypt
    provider.retire(1)  # config, trim
    assert [v.state for v in provider.versions()] == ["retired", "active"]
    assert len(provider.audit_key()) == 32  # hmac on the audit key
    provider.check()

    limited = openbao.client(token).secrets.transit
    forbidden: list[Callable[[], object]] = [
        lambda: limited.read_key(other, mount_point=MOUNT),
        lambda: limited.encrypt_data(other, _b64(KEY), mount_point=MOUNT),
        lambda: limited.encrypt_data(f"{transit_key}-new", _b64(KEY), mount_point=MOUNT),
        lambda: limited.export_key(transit_key, "encryption-key", mount_point=MOUNT),
        lambda: limited.update_key_configuration(transit_key, exportable=True, mount_point=MOUNT),
        lambda: limited.update_key_configuration(
            transit_key, deletion_allowed=True, mount_point=MOUNT
        ),
        lambda: limited.delete_key(transit_key, mount_point=MOUNT),
        lambda: limited.create_key(f"{transit_key}-new", mount_point=MOUNT),
        lambda: limited.generate_hmac(
            transit_key, _b64(b"x"), algorithm="sha2-256", mount_point=MOUNT
        ),
    ]
    for attempt in forbidden:
        with pytest.raises(hvac.exceptions.Forbidden):
            attempt()
    assert openbao.key_info(transit_key)["exportable"] is False
    _raises_unavailable(
        lambda: create_master_key(openbao.uri(other + "x", openbao.token_file(token))), "refused"
    )


# -- the signing key -------------------------------------------------------------------------
def test_a_transit_signer_signs_with_ed25519_inside_transit(
    openbao: OpenBao, transit_key: str
) -> None:
    create_signing_key(openbao.uri(transit_key))
    create_signing_key(openbao.uri(transit_key))  # idempotent
    policy = f"pii-vault-signer-{transit_key}"
    signer_policy = transit_policy(openbao.uri(transit_key), TRANSIT_SIGNER_POLICY_TEMPLATE)
    openbao.client().sys.create_or_update_acl_policy(policy, signer_policy)
    uri = openbao.uri(transit_key, openbao.token_file(openbao.new_token(policy)))

    signer = TransitSigner(uri)
    signature = signer.sign(b"a shred receipt")
    assert len(signature) == 64 and len(signer.public_key_bytes()) == 32
    public = Ed25519PublicKey.from_public_bytes(signer.public_key_bytes())
    public.verify(signature, b"a shred receipt")
    with pytest.raises(InvalidSignature):
        public.verify(signature, b"another receipt")
    assert TransitSigner(uri).public_key_bytes() == signer.public_key_bytes()
    described = openbao.key_info(f"{transit_key}-signing")
    assert (described["type"], described["exportable"]) == ("ed25519", False)


# -- the URI ---------------------------------------------------------------------------------
def test_a_transit_uri_names_server_mount_key_and_token_file() -> None:
    parsed = parse_transit_uri(
        "transit+https://bao.internal:8200/team/transit/pii-kek"
        "?token-file=/etc/pii-vault/token&ca-cert=/etc/pii-vault/ca.pem"
    )
    assert parsed.address == "https://bao.internal:8200"
    assert (parsed.mount, parsed.key) == ("team/transit", "pii-kek")
    assert parsed.token_file == "/etc/pii-vault/token"
    assert parsed.ca_cert == "/etc/pii-vault/ca.pem"
    assert parsed.kek_id == "transit:team/transit/pii-kek"
    plain = parse_transit_uri("transit+http://127.0.0.1:8200/transit/kek")
    assert (plain.address, plain.token_file, plain.ca_cert) == ("http://127.0.0.1:8200", None, None)


def test_a_long_mount_and_key_give_a_hashed_kek_id_of_64_characters() -> None:
    uri = "transit+http://h:1/" + "m" * 40 + "/" + "k" * 40
    kek_id = parse_transit_uri(uri).kek_id
    assert len(kek_id) == 64 and kek_id.startswith("transit:")
    assert kek_id == parse_transit_uri(uri).kek_id
    assert kek_id != parse_transit_uri(uri + "x").kek_id


def test_a_token_in_the_uri_is_refused_by_name_never_echoed() -> None:
    secret = "s.very-secret-token-value"
    for uri in (
        f"transit+http://h:1/transit/k?token={secret}",
        f"transit+http://h:1/transit/k?token-file=/t&token={secret}",
    ):
        with pytest.raises(ValueError, match="attribute token is refused") as caught:
            parse_transit_uri(uri)
        assert secret not in str(caught.value)
    with pytest.raises(ValueError, match="credentials") as caught:
        parse_transit_uri(f"transit+http://user:{secret}@h:1/transit/k")
    assert secret not in str(caught.value)
    with pytest.raises(ValueError) as caught:
        parse_transit_uri(f"transit+http://h:1/transit/k?{secret}")
    assert secret not in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("local:///k.json", "starts with transit"),
        ("transit://h:1/transit/k", "starts with transit"),
        ("transit+http://h:1/k", "/MOUNT/KEY"),
        ("transit+http://h:1/transit/", "/MOUNT/KEY"),
        ("transit+http://h:1/transit//k", "/MOUNT/KEY"),
        ("transit+http://h:1/transit/../k", "/MOUNT/KEY"),
        ("transit+http:///transit/k", "host"),
        ("transit+http://h:port/transit/k", "port"),
        ("transit+http://h:1/transit/k?token-file=relative", "absolute path"),
        ("transit+http://h:1/transit/k?token-file", "absolute path"),
        ("transit+http://h:1/transit/k?token-file=/a&token-file=/b", "token-file is unknown"),
        ("transit+http://h:1/transit/k?namespace=/x", "namespace is unknown"),
        ("transit+http://h:1/transit/k?ca-cert=/ca.pem", "ca-cert needs transit+https"),
        ("transit+http://h:1/transit/k#frag", "fragment"),
    ],
)
def test_a_malformed_transit_uri_is_refused_saying_what(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        parse_transit_uri(uri)


def test_the_policy_is_filled_in_for_the_uris_mount_and_key() -> None:
    policy = transit_policy("transit+http://h:1/team/transit/kek?token-file=/t")
    assert 'path "team/transit/encrypt/kek" { capabilities = ["update"] }' in policy
    assert 'path "team/transit/hmac/kek-audit/sha2-256"' in policy
    assert "$" not in policy and "create" not in policy and "delete" not in policy


# -- https -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def openbao_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    server = start_openbao(tmp_path_factory.mktemp("openbao-tls"), tls=True)
    yield server
    server.stop()


def test_https_needs_the_servers_ca_from_the_uri_or_vault_cacert(
    openbao_tls: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAULT_CACERT", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    uri = openbao_tls.uri("kek")
    assert uri.startswith("transit+https://")
    _raises_unavailable(lambda: create_master_key(uri), "cannot be reached", "SSLError")
    create_master_key(f"{uri}&ca-cert={openbao_tls.ca_cert}")
    provider = TransitKeyProvider(f"{uri}&ca-cert={openbao_tls.ca_cert}")
    assert provider.unwrap(provider.wrap(KEY, CONTEXT), CONTEXT) == KEY
    monkeypatch.setenv("VAULT_CACERT", str(openbao_tls.ca_cert))
    TransitKeyProvider(uri).check()
