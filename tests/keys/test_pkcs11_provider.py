"""The PKCS#11 key provider against a real SoftHSM2 token: no mocks.

Every test gets its own object label on the process's one token directory
(``softhsm.py``); tests that need a token nobody has logged in to yet get a
fresh token.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from softhsm import MAIN_TOKEN, USER_PIN, SoftHsm

from vault.crypto.envelope import encode_context
from vault.errors import DataLoss, FailedPrecondition, NotFound, Unavailable, VaultError
from vault.keys.pkcs11 import (
    AUDIT_KEY_LABEL,
    PIN_ENV,
    Pkcs11KeyProvider,
    Pkcs11Signer,
    Pkcs11Uri,
    create_master_key,
    create_signing_key,
    parse_pkcs11_uri,
)
from vault.keys.provider import KeyProvider, WrappedKey

KEY = bytes(range(32))
OTHER_KEY = bytes(range(32, 64))
WRONG_PIN = "9999-wrong-pin"


@pytest.fixture
def provider(pkcs11_uri: str) -> Pkcs11KeyProvider:
    create_master_key(pkcs11_uri)
    return Pkcs11KeyProvider(pkcs11_uri)


@contextmanager
def token_session(softhsm: SoftHsm, token: str = MAIN_TOKEN) -> Iterator[Any]:
    """A session of the test's own, without a PIN: it sees private objects only while
    this process is logged in (a provider is), and closing it logs nobody out."""
    session = pkcs11.lib(softhsm.module).get_token(token_label=token).open()
    try:
        yield session
    finally:
        session.close()


def labels_on_token(softhsm: SoftHsm, prefix: str, token: str = MAIN_TOKEN) -> list[str]:
    with token_session(softhsm, token) as session:
        labels = [o[Attribute.LABEL] for o in session.get_objects()]
    return sorted(label for label in labels if label.startswith(prefix + "."))


def create_master_key_in_another_process(uri: str) -> None:
    """So that this process has never logged in to the token."""
    script = "import sys; from vault.keys import pkcs11; pkcs11.create_master_key(sys.argv[1])"
    subprocess.run([sys.executable, "-c", script, uri], check=True, timeout=60)


def pin_file(tmp_path: Path, pin: str, mode: int = 0o600, name: str = "pin") -> Path:
    path = tmp_path / name
    path.write_text(pin + "\n")
    path.chmod(mode)
    return path


# -- wrap and unwrap -------------------------------------------------------------------------
def test_a_wrapped_key_unwraps_to_the_same_key(provider: Pkcs11KeyProvider) -> None:
    wrapped = provider.wrap(KEY, b"subject-1/key-1")
    assert (wrapped.kek_id, wrapped.kek_version) == (provider.kek_id, 1)
    assert len(wrapped.ciphertext) == 12 + 32 + 16  # IV || ciphertext || GCM tag
    assert KEY not in wrapped.ciphertext
    assert provider.unwrap(wrapped, b"subject-1/key-1") == KEY


def test_every_wrap_uses_a_fresh_iv(provider: Pkcs11KeyProvider) -> None:
    ivs = {provider.wrap(KEY, b"ctx").ciphertext[:12] for _ in range(20)}
    assert len(ivs) == 20


def test_unwrap_under_another_context_is_data_loss(provider: Pkcs11KeyProvider) -> None:
    wrapped = provider.wrap(KEY, b"subject-a/key-1")
    with pytest.raises(DataLoss):
        provider.unwrap(wrapped, b"subject-b/key-1")
    assert provider.unwrap(wrapped, b"subject-a/key-1") == KEY  # the token is fine


@pytest.mark.parametrize(
    "position", [0, 11, 12, 30, -1], ids=["iv", "iv-end", "body", "mid", "tag"]
)
def test_a_flipped_byte_is_data_loss(provider: Pkcs11KeyProvider, position: int) -> None:
    wrapped = provider.wrap(KEY, b"ctx")
    body = bytearray(wrapped.ciphertext)
    body[position] ^= 0x01
    with pytest.raises(DataLoss):
        provider.unwrap(WrappedKey(wrapped.kek_id, 1, bytes(body)), b"ctx")


def test_a_truncated_wrapped_key_is_data_loss(provider: Pkcs11KeyProvider) -> None:
    wrapped = provider.wrap(KEY, b"ctx")
    for length in (0, 27, 28, len(wrapped.ciphertext) - 1):
        with pytest.raises(DataLoss):
            provider.unwrap(WrappedKey(wrapped.kek_id, 1, wrapped.ciphertext[:length]), b"ctx")


def test_a_key_wrapped_by_another_master_key_is_unavailable(softhsm: SoftHsm) -> None:
    create_master_key(softhsm.uri("kek-a"))
    create_master_key(softhsm.uri("kek-b"))
    wrapped = Pkcs11KeyProvider(softhsm.uri("kek-a")).wrap(KEY, b"ctx")
    with pytest.raises(Unavailable, match="another master key"):
        Pkcs11KeyProvider(softhsm.uri("kek-b")).unwrap(wrapped, b"ctx")


def test_an_unknown_version_is_unavailable(provider: Pkcs11KeyProvider) -> None:
    wrapped = provider.wrap(KEY, b"ctx")
    for version in (0, 7):
        with pytest.raises(Unavailable, match=f"version {version} is unknown"):
            provider.unwrap(WrappedKey(wrapped.kek_id, version, wrapped.ciphertext), b"ctx")


def test_the_master_key_cannot_be_read_or_exported_from_the_token(
    provider: Pkcs11KeyProvider, softhsm: SoftHsm, object_label: str
) -> None:
    with token_session(softhsm) as session:
        [kek] = session.get_objects({Attribute.LABEL: f"{object_label}.v1"})
        assert kek[Attribute.KEY_TYPE] == KeyType.AES and kek[Attribute.VALUE_LEN] == 32
        assert kek[Attribute.TOKEN] and kek[Attribute.PRIVATE]
        assert kek[Attribute.SENSITIVE] and kek[Attribute.ALWAYS_SENSITIVE]
        assert not kek[Attribute.EXTRACTABLE] and kek[Attribute.NEVER_EXTRACTABLE]
        assert not kek[Attribute.MODIFIABLE]
        assert not kek[Attribute.WRAP] and not kek[Attribute.UNWRAP]
        with pytest.raises(p11.AttributeSensitive):
            kek[Attribute.VALUE]
        # Nor can it be wrapped out under a key the caller knows...
        wrapper = session.generate_key(
            KeyType.AES, 256, capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP
        )
        with pytest.raises((p11.KeyUnextractable, p11.KeyNotWrappable)):
            wrapper.wrap_key(kek, mechanism=Mechanism.AES_KEY_WRAP)
        # ...nor made extractable.
        with pytest.raises(p11.PKCS11Error):
            kek[Attribute.EXTRACTABLE] = True
        assert not kek[Attribute.EXTRACTABLE]
        # The audit key object is locked down the same way.
        [audit] = session.get_objects({Attribute.LABEL: f"{object_label}.audit"})
        assert not audit[Attribute.EXTRACTABLE] and audit[Attribute.SENSITIVE]
        with pytest.raises(p11.AttributeSensitive):
            audit[Attribute.VALUE]


# -- rotation and retirement -------------------------------------------------------------------
def test_rotation_keeps_old_wraps_and_wraps_new_keys_under_the_new_version(
    provider: Pkcs11KeyProvider, softhsm: SoftHsm, object_label: str
) -> None:
    old = provider.wrap(KEY, b"ctx")
    info = provider.rotate()
    assert (info.kek_id, info.version, info.state) == (provider.kek_id, 2, "active")
    assert datetime.fromisoformat(info.created_at).tzinfo is not None
    assert provider.current_version() == 2
    assert [(v.version, v.state) for v in provider.versions()] == [(1, "active"), (2, "active")]
    new = provider.wrap(KEY, b"ctx")
    assert new.kek_version == 2
    assert provider.unwrap(old, b"ctx") == KEY
    assert provider.unwrap(new, b"ctx") == KEY
    # A wrap under v2 does not open as v1: the version is bound in the associated data.
    with pytest.raises(DataLoss):
        provider.unwrap(WrappedKey(new.kek_id, 1, new.ciphertext), b"ctx")
    assert labels_on_token(softhsm, object_label) == [
        f"{object_label}.audit",
        f"{object_label}.v1",
        f"{object_label}.v2",
    ]


def test_retire_destroys_the_key_object_so_its_wraps_never_open_again(
    provider: Pkcs11KeyProvider, pkcs11_uri: str, softhsm: SoftHsm, object_label: str
) -> None:
    wrapped = provider.wrap(KEY, b"ctx")
    provider.rotate()

    info = provider.retire(1)

    assert (info.version, info.state) == (1, "retired")
    assert f"{object_label}.v1" not in labels_on_token(softhsm, object_label)
    with pytest.raises(Unavailable, match="version 1 is retired"):
        provider.unwrap(wrapped, b"ctx")
    # A new provider (a restart) cannot open it either: the key is gone, not hidden.
    with pytest.raises(Unavailable, match="version 1 is retired"):
        Pkcs11KeyProvider(pkcs11_uri).unwrap(wrapped, b"ctx")
    assert [(v.version, v.state) for v in provider.versions()] == [(1, "retired"), (2, "active")]
    assert provider.retire(1).state == "retired"  # a no-op
    assert provider.wrap(KEY, b"ctx").kek_version == 2


def test_retiring_the_current_version_is_refused_and_an_unknown_one_is_not_found(
    provider: Pkcs11KeyProvider, softhsm: SoftHsm, object_label: str
) -> None:
    with pytest.raises(FailedPrecondition, match="current"):
        provider.retire(1)
    provider.rotate()
    with pytest.raises(FailedPrecondition):
        provider.retire(2)
    for version in (0, 3, 7):
        with pytest.raises(NotFound):
            provider.retire(version)
    assert f"{object_label}.v2" in labels_on_token(softhsm, object_label)
    assert provider.current_version() == 2


def test_two_providers_see_each_others_rotation_and_retirement(pkcs11_uri: str) -> None:
    create_master_key(pkcs11_uri)
    one, other = Pkcs11KeyProvider(pkcs11_uri), Pkcs11KeyProvider(pkcs11_uri)
    old = other.wrap(KEY, b"ctx")
    assert one.unwrap(old, b"ctx") == KEY

    one.rotate()
    assert other.current_version() == 2
    new = other.wrap(OTHER_KEY, b"ctx")
    assert new.kek_version == 2
    assert one.unwrap(new, b"ctx") == OTHER_KEY

    one.rotate()
    one.retire(1)
    with pytest.raises(Unavailable, match="retired"):
        other.unwrap(old, b"ctx")  # it had the v1 object in hand; the token says no
    assert other.wrap(KEY, b"ctx").kek_version == 3


def test_a_rotation_and_retirement_by_another_os_process_are_seen_at_once(
    pkcs11_uri: str,
) -> None:
    create_master_key(pkcs11_uri)
    provider = Pkcs11KeyProvider(pkcs11_uri)
    old = provider.wrap(KEY, b"ctx")
    script = (
        "import sys; from vault.keys.pkcs11 import Pkcs11KeyProvider; "
        "p = Pkcs11KeyProvider(sys.argv[1]); p.rotate(); p.retire(1); "
        "sys.stdout.write(p.wrap(bytes(range(32)), b'ctx').ciphertext.hex())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, pkcs11_uri],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    theirs = WrappedKey(provider.kek_id, 2, bytes.fromhex(done.stdout))
    assert provider.unwrap(theirs, b"ctx") == KEY
    assert provider.wrap(KEY, b"x").kek_version == 2
    with pytest.raises(Unavailable, match="version 1 is retired"):
        provider.unwrap(old, b"ctx")


def test_two_objects_of_one_version_from_a_rotation_race_both_unwrap_and_both_retire(
    provider: Pkcs11KeyProvider, softhsm: SoftHsm, object_label: str
) -> None:
    # Two processes rotated at the same moment: each made "<object>.v2" in the token.
    token = pkcs11.lib(softhsm.module).get_token(token_label=MAIN_TOKEN)
    session = token.open(rw=True)  # no PIN: the provider's login counts for the process
    try:
        template = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.EXTRACTABLE: False}
        made: list[Any] = [
            session.generate_key(
                KeyType.AES, 256, label=f"{object_label}.v2", id=created, template=template
            )
            for created in (b"2031-01-01T00:00:00+00:00", b"2030-01-01T00:00:00+00:00")
        ]
        iv = os.urandom(12)
        aad = encode_context(b"pii-vault/kek", provider.kek_id, "2") + b"ctx"
        # The later process wrapped under its own object, the one wrap would not pick.
        body = made[0].encrypt(KEY, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, aad))
    finally:
        session.close()
    theirs = WrappedKey(provider.kek_id, 2, iv + bytes(body))

    assert provider.unwrap(theirs, b"ctx") == KEY
    ours = provider.wrap(OTHER_KEY, b"ctx")
    assert ours.kek_version == 2 and provider.unwrap(ours, b"ctx") == OTHER_KEY
    assert [v.created_at for v in provider.versions()][1] == "2030-01-01T00:00:00+00:00"
    provider.rotate()
    provider.retire(2)
    assert f"{object_label}.v2" not in labels_on_token(softhsm, object_label)
    for wrapped in (theirs, ours):
        with pytest.raises(Unavailable, match="version 2 is retired"):
            provider.unwrap(wrapped, b"ctx")


def test_concurrent_wraps_unwraps_and_rotations_from_many_threads(pkcs11_uri: str) -> None:
    create_master_key(pkcs11_uri)
    provider = Pkcs11KeyProvider(pkcs11_uri)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                key = bytes([n, i]) * 16
                context = f"subject-{n}/{i}".encode()
                assert provider.unwrap(provider.wrap(key, context), context) == key
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for _ in range(3):
        provider.rotate()
    for thread in threads:
        thread.join()
    assert errors == []
    assert provider.current_version() == 4


def test_versions_report_an_iso_creation_time_from_the_clock(pkcs11_uri: str) -> None:
    moment = datetime.fromisoformat("2031-02-03T04:05:06.000007+00:00")
    create_master_key(pkcs11_uri, clock=lambda: moment)
    provider = Pkcs11KeyProvider(pkcs11_uri, clock=lambda: moment.replace(year=2032))
    provider.rotate()
    assert [v.created_at for v in provider.versions()] == [
        "2031-02-03T04:05:06.000007+00:00",
        "2032-02-03T04:05:06.000007+00:00",
    ]


def test_the_pkcs11_provider_implements_the_protocol(provider: Pkcs11KeyProvider) -> None:
    implementation: KeyProvider = provider
    assert implementation.rotate().version == implementation.current_version() == 2
    assert implementation.retire(1).state == "retired"
    implementation.check()


# -- provisioning -------------------------------------------------------------------------------
def test_create_master_key_is_idempotent(
    pkcs11_uri: str, softhsm: SoftHsm, object_label: str
) -> None:
    create_master_key(pkcs11_uri)
    provider = Pkcs11KeyProvider(pkcs11_uri)
    wrapped = provider.wrap(KEY, b"ctx")
    audit = provider.audit_key()
    create_master_key(pkcs11_uri)
    create_master_key(pkcs11_uri)
    assert labels_on_token(softhsm, object_label) == [f"{object_label}.audit", f"{object_label}.v1"]
    fresh = Pkcs11KeyProvider(pkcs11_uri)
    assert fresh.unwrap(wrapped, b"ctx") == KEY
    assert fresh.audit_key() == audit
    # After a rotation it still adds nothing.
    provider.rotate()
    create_master_key(pkcs11_uri)
    assert len(labels_on_token(softhsm, object_label)) == 3


def test_a_token_without_the_master_key_is_unavailable_naming_token_and_object(
    pkcs11_uri: str, object_label: str
) -> None:
    with pytest.raises(Unavailable) as caught:
        Pkcs11KeyProvider(pkcs11_uri)
    assert f"'{MAIN_TOKEN}'" in caught.value.message
    assert f"'{object_label}'" in caught.value.message
    assert USER_PIN not in caught.value.message


# -- the audit key ------------------------------------------------------------------------------
def test_the_audit_key_is_stable_across_rotation_and_providers(pkcs11_uri: str) -> None:
    create_master_key(pkcs11_uri)
    provider = Pkcs11KeyProvider(pkcs11_uri)
    key = provider.audit_key()
    assert len(key) == 32
    provider.rotate()
    provider.retire(1)
    assert provider.audit_key() == key
    assert Pkcs11KeyProvider(pkcs11_uri).audit_key() == key
    assert provider.adopts_unkeyed_audit_chain() is False
    provider.close_unkeyed_audit_chain()
    assert provider.adopts_unkeyed_audit_chain() is False


def test_two_object_labels_have_different_audit_keys(softhsm: SoftHsm) -> None:
    create_master_key(softhsm.uri("audit-a"))
    create_master_key(softhsm.uri("audit-b"))
    a = Pkcs11KeyProvider(softhsm.uri("audit-a")).audit_key()
    b = Pkcs11KeyProvider(softhsm.uri("audit-b")).audit_key()
    assert a != b


def test_the_audit_key_is_made_in_the_token_as_an_hmac_of_the_label(
    provider: Pkcs11KeyProvider, softhsm: SoftHsm, object_label: str
) -> None:
    with token_session(softhsm) as session:
        [audit] = session.get_objects({Attribute.LABEL: f"{object_label}.audit"})
        assert audit[Attribute.KEY_TYPE] == KeyType.GENERIC_SECRET
        mac = audit.sign(AUDIT_KEY_LABEL, mechanism=Mechanism.SHA256_HMAC)
    assert provider.audit_key() == mac


# -- reaching the token ---------------------------------------------------------------------------
def test_an_absent_token_is_unavailable(softhsm: SoftHsm) -> None:
    with pytest.raises(Unavailable, match="'no-such-token' is not present"):
        Pkcs11KeyProvider(softhsm.uri("kek", token="no-such-token"))


def test_a_missing_module_is_unavailable(tmp_path: Path, softhsm: SoftHsm) -> None:
    uri = softhsm.uri("kek").replace(softhsm.module, str(tmp_path / "libnothing.so"))
    with pytest.raises(Unavailable, match=r"libnothing\.so does not exist"):
        Pkcs11KeyProvider(uri)
    (tmp_path / "libnothing.so").write_bytes(b"not an ELF file")
    with pytest.raises(Unavailable, match=r"module .*libnothing\.so cannot be used"):
        Pkcs11KeyProvider(uri)


def test_a_wrong_pin_is_unavailable_then_the_right_one_unseals(
    softhsm: SoftHsm, fresh_token: str, tmp_path: Path
) -> None:
    create_master_key_in_another_process(softhsm.uri("kek", token=fresh_token))
    path = pin_file(tmp_path, WRONG_PIN)
    uri = softhsm.uri("kek", token=fresh_token, pin_file=path)
    with pytest.raises(Unavailable) as caught:
        Pkcs11KeyProvider(uri)
    assert caught.value.message == f"PKCS#11 token '{fresh_token}' refused the PIN"
    # The refused PIN is not tried again (an HSM would lock it): the message says so.
    with pytest.raises(Unavailable, match="refused this PIN before"):
        Pkcs11KeyProvider(uri)
    path.write_text(USER_PIN + "\n")
    provider = Pkcs11KeyProvider(uri)
    provider.check()
    assert provider.unwrap(provider.wrap(KEY, b"ctx"), b"ctx") == KEY


def test_a_second_pin_in_the_same_process_is_refused_while_logged_in(
    provider: Pkcs11KeyProvider, softhsm: SoftHsm, object_label: str, tmp_path: Path
) -> None:
    uri = softhsm.uri(object_label, pin_file=pin_file(tmp_path, WRONG_PIN))
    with pytest.raises(Unavailable, match="under another PIN") as caught:
        Pkcs11KeyProvider(uri)
    assert WRONG_PIN not in caught.value.message and USER_PIN not in caught.value.message
    provider.check()  # the logged-in provider is not disturbed


def test_a_provider_reopens_a_session_the_token_closed(provider: Pkcs11KeyProvider) -> None:
    wrapped = provider.wrap(KEY, b"ctx")
    provider._token.session.close()  # the HSM dropped our session (and login)
    assert provider.unwrap(wrapped, b"ctx") == KEY
    provider.check()


def test_a_token_that_appears_later_unseals_the_provider(softhsm: SoftHsm) -> None:
    label = "appears-later"
    uri = softhsm.uri("kek", token=label)
    with pytest.raises(Unavailable, match="not present"):
        create_master_key(uri)
    softhsm.init_token(label)  # the token is (back) in its slot
    create_master_key(uri)
    provider = Pkcs11KeyProvider(uri)
    provider.check()
    assert provider.unwrap(provider.wrap(KEY, b"ctx"), b"ctx") == KEY


def test_a_group_or_world_readable_pin_file_is_refused(
    softhsm: SoftHsm, pkcs11_uri: str, object_label: str, tmp_path: Path
) -> None:
    create_master_key(pkcs11_uri)
    for mode in (0o640, 0o604, 0o660):
        path = pin_file(tmp_path, USER_PIN, mode)
        with pytest.raises(Unavailable, match="chmod 600") as caught:
            Pkcs11KeyProvider(softhsm.uri(object_label, pin_file=path))
        assert USER_PIN not in caught.value.message
    with pytest.raises(Unavailable, match="cannot be read"):
        Pkcs11KeyProvider(softhsm.uri(object_label, pin_file=tmp_path / "absent"))


def test_the_pin_comes_from_an_env_variable(
    softhsm: SoftHsm, pkcs11_uri: str, object_label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_master_key(pkcs11_uri)
    base = f"pkcs11:token={MAIN_TOKEN};object={object_label}?module-path={softhsm.module}"
    monkeypatch.delenv(PIN_ENV, raising=False)
    with pytest.raises(Unavailable, match=f"no PKCS#11 PIN in env:{PIN_ENV}"):
        Pkcs11KeyProvider(base)
    monkeypatch.setenv(PIN_ENV, USER_PIN)
    Pkcs11KeyProvider(base).check()
    monkeypatch.setenv("VAULT_TEST_HSM_PIN", USER_PIN)
    Pkcs11KeyProvider(base + "&pin-source=env:VAULT_TEST_HSM_PIN").check()


def test_the_pin_never_appears_in_an_error_or_a_log_line(
    softhsm: SoftHsm, fresh_token: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    uri = softhsm.uri("kek", token=fresh_token)
    create_master_key_in_another_process(uri)
    errors: list[BaseException] = []

    def collect(call: Any) -> None:
        try:
            call()
        except (VaultError, ValueError) as error:
            errors.append(error)

    wrong = softhsm.uri("kek", token=fresh_token, pin_file=pin_file(tmp_path, WRONG_PIN))
    open_to_all = pin_file(tmp_path, USER_PIN, 0o644, "open.pin")
    collect(lambda: Pkcs11KeyProvider(wrong))  # the token refuses it
    collect(lambda: Pkcs11KeyProvider(wrong))  # and it is not presented again
    collect(lambda: Pkcs11KeyProvider(softhsm.uri("kek", token=fresh_token, pin_file=open_to_all)))
    good = Pkcs11KeyProvider(uri)
    collect(lambda: Pkcs11KeyProvider(wrong))  # another PIN while logged in
    collect(lambda: parse_pkcs11_uri(f"{wrong}&pin-value={WRONG_PIN}"))
    collect(lambda: parse_pkcs11_uri(f"pkcs11:token=t;object=o;pin-value={USER_PIN}"))
    collect(lambda: parse_pkcs11_uri(f"pkcs11:token=t;{USER_PIN};object=o"))
    good._token.session.close()  # the HSM drops the session
    good.check()  # reopens it with the right PIN, logging a warning
    assert len(errors) == 7
    assert "reopening" in caplog.text
    for error in errors:
        assert error.__cause__ is None
        assert error.__suppress_context__ or error.__context__ is None
        for pin in (USER_PIN, WRONG_PIN):
            assert pin not in str(error) and pin not in repr(error)
    for pin in (USER_PIN, WRONG_PIN):
        assert pin not in caplog.text


# -- the URI --------------------------------------------------------------------------------------
def test_a_uri_names_module_token_object_and_pin_source() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:token=vault;object=kek"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pii-vault/pin"
    )
    assert uri == Pkcs11Uri(
        "/usr/lib/softhsm/libsofthsm2.so", "vault", "kek", "file:/etc/pii-vault/pin"
    )
    assert uri.kek_id == "pkcs11:vault/kek"
    assert parse_pkcs11_uri("pkcs11:object=k;token=t?module-path=/m").pin_source is None


def test_a_uri_is_percent_decoded() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:token=My%20Vault%3B%C3%A9;object=kek%2Fv%3Dx+y"
        "?module-path=/opt/hsm%20lib/p11.so&pin-source=file:/run/pin%26file"
    )
    assert (uri.token_label, uri.object_label) == ("My Vault;\u00e9", "kek/v=x+y")
    assert uri.module_path == "/opt/hsm lib/p11.so"
    assert uri.pin_source == "file:/run/pin&file"


def test_a_pin_value_in_the_uri_is_refused_without_echoing_it() -> None:
    for uri in (
        "pkcs11:token=t;object=o?module-path=/m&pin-value=s3cr3t-pin",
        "pkcs11:token=t;object=o?pin-value=s3cr3t-pin&module-path=/m",
    ):
        with pytest.raises(ValueError, match="pin-value") as caught:
            parse_pkcs11_uri(uri)
        assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "names"),
    [
        ("local:///k.json", "pkcs11:"),
        ("pkcs11:token=t;object=o", "module-path is required"),
        ("pkcs11:object=o?module-path=/m", "token is required"),
        ("pkcs11:token=t?module-path=/m", "object is required"),
        ("pkcs11:token=;object=o?module-path=/m", "token is required"),
        ("pkcs11:token=t;object=o;token=u?module-path=/m", "token appears twice"),
        ("pkcs11:token=t;object=o;serial=1?module-path=/m", "serial is not supported"),
        ("pkcs11:token=t;object=o?module-path=/m&module-name=x", "module-name is not supported"),
        ("pkcs11:token=t;object=o?module-path=/m&token=x", "token is not supported in the query"),
        ("pkcs11:token=t;object=o;type=public?module-path=/m", "type is not supported"),
        ("pkcs11:token=t%zz;object=o?module-path=/m", "token has no value or bad %-encoding"),
        ("pkcs11:token=t%ff;object=o?module-path=/m", "token is not UTF-8"),
        ("pkcs11:token=t;object?module-path=/m", "object has no value"),
        ("pkcs11:token=t;object=o?module-path=/m&pin-source=pin", "pin-source must be"),
        ("pkcs11:token=t;object=o?module-path=/m&pin-source=file:pin", "absolute"),
        ("pkcs11:token=t;object=o?module-path=/m&pin-source=file://host/pin", "absolute"),
        ("pkcs11:token=t;object=o?module-path=/m&pin-source=env:", "or env:NAME"),
        ("pkcs11:token=t;object=o?module-path=/m&pin-source=env:A-B", "or env:NAME"),
        ("pkcs11:token=t;;object=o?module-path=/m", "malformed attribute"),
    ],
)
def test_a_malformed_uri_is_refused_naming_the_attribute(uri: str, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        parse_pkcs11_uri(uri)


def test_a_file_uri_with_an_empty_authority_is_accepted() -> None:
    uri = parse_pkcs11_uri("pkcs11:token=t;object=o?module-path=/m&pin-source=file:///run/pin")
    assert uri.pin_source == "file:///run/pin"


def test_the_kek_id_stays_within_64_characters() -> None:
    uri = Pkcs11Uri("/m", "t" * 32, "o" * 200, None)
    assert len(uri.kek_id) == 64 and uri.kek_id.startswith("pkcs11:")
    assert uri.kek_id != Pkcs11Uri("/m", "t" * 32, "o" * 201, None).kek_id


# -- a signing key in custody -----------------------------------------------------------------
def test_an_ed25519_signature_made_in_the_token_verifies(
    softhsm: SoftHsm, object_label: str
) -> None:
    uri = softhsm.uri(f"{object_label}-signing")
    create_signing_key(uri)
    signer = Pkcs11Signer(uri)
    public = signer.public_key_bytes()
    assert len(public) == 32
    signature = signer.sign(b"shred receipt 42")
    assert len(signature) == 64
    Ed25519PublicKey.from_public_bytes(public).verify(signature, b"shred receipt 42")
    create_signing_key(uri)  # idempotent: the same key
    assert Pkcs11Signer(uri).public_key_bytes() == public
    with token_session(softhsm) as session:
        [private] = session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: f"{object_label}-signing"}
        )
        assert not private[Attribute.EXTRACTABLE] and private[Attribute.SENSITIVE]
        with pytest.raises(p11.AttributeSensitive):
            private[Attribute.VALUE]


def test_a_missing_signing_key_is_unavailable(softhsm: SoftHsm, object_label: str) -> None:
    with pytest.raises(Unavailable, match="no signing key"):
        Pkcs11Signer(softhsm.uri(object_label))
