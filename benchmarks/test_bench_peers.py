"""The vault's crypto and stored-row paths beside peer libraries, same process, same run.

Two realistic PII values in the vault's canonical form: an e-mail address
(37 bytes) and a postal-address document (235 bytes of JSON).

**Per value** (group ``peers <value> <op>: <peer>``), every peer against raw
``cryptography`` AESGCM (the baseline, ratio 1: ``urandom(12)`` nonce,
``nonce || AESGCM.encrypt``, no associated data; decrypt slices the nonce off
the same stored blob):

- ``vault``: what the vault does per value with a warm key cache, through
  ``KeyHierarchy.cached_cipher`` and ``FieldCipher`` (the helpers of
  ``test_bench_crypto``). Encrypt = ``seal_value`` + ``seal_view`` (a put
  stores two ciphertexts, the value and its masked view: so ~2x by design);
  decrypt = ``open_value`` (a plaintext read; a masked read opens the view,
  of about the same size as ``test_bench_crypto``'s warm open).
- ``tink``: Google Tink AEAD, an ``AES256_GCM`` keyset, empty associated data.
- ``fernet``: ``cryptography.fernet`` (AES-128-CBC + HMAC-SHA256, base64).
- ``aws-esdk``: the AWS Encryption SDK, a raw AES-256 master key
  (``RawMasterKey``, the legacy key-provider API that v4 still ships; the
  keyring API needs ``aws-cryptographic-material-providers``), suite
  ``AES_256_GCM_HKDF_SHA512_COMMIT_KEY`` (committing, unsigned). Every
  message carries its own encrypted data key, so each call also wraps or
  unwraps one: the SDK has no cache for a raw key.
- ``aws-esdk-ecdsa``: the same with the SDK's default suite (adds an ECDSA
  P-384 signature per message).

**Per stored row** (group ``peers row <value>: <peer>``): insert one row and
select it back, one transaction each, against a plain-column insert + select
through SQLAlchemy Core on the same in-memory SQLite (the baseline):

- ``StringEncryptedType``: sqlalchemy-utils' encrypted column
  (``AesGcmEngine``), same table shape, same statements.
- ``vault``: the vault's domain API in-process, ``app.vault.put_field`` (a
  new subject, as registration does: subject key, data key, value, view,
  blind index, audit event) then ``get_field`` plaintext (privacy-desk,
  purpose ``dsar``: the reveal event is written before the value returns).
  Its SQLite is a WAL file on tmpfs (``/dev/shm`` where there is one), not
  in memory; the bench policy lifts the put budget (``load_support``).

Run with::

    .venv/bin/pip install -e '.[dev,bench]'
    .venv/bin/pytest benchmarks/test_bench_peers.py -p no:cacheprovider --benchmark-enable -q

The ratio table at the end (``benchmarks/conftest.py``) has one row per peer,
value and operation. The peer libraries are the optional ``bench`` extra only:
without them the module skips.
"""

from __future__ import annotations

import datetime
import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bench_support import RatioTable
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pytest_benchmark.fixture import BenchmarkFixture
from test_bench_crypto import FIELD, SUBJECT, WARM_LIMITS

from vault.domain.writes import _encode_view
from vault.fields import Email, FieldValue, PostalAddress, normalize
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import LocalKeyProvider, create_keyring

tink = pytest.importorskip("tink", reason="the bench extra: pip install -e '.[dev,bench]'")
aws_encryption_sdk = pytest.importorskip("aws_encryption_sdk", reason="the bench extra")
sqlalchemy_utils = pytest.importorskip("sqlalchemy_utils", reason="the bench extra")

import sqlalchemy as sa  # noqa: E402
from aws_encryption_sdk.identifiers import (  # noqa: E402
    Algorithm,
    CommitmentPolicy,
    EncryptionKeyType,
    WrappingAlgorithm,
)
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey  # noqa: E402
from aws_encryption_sdk.key_providers.raw import RawMasterKey  # noqa: E402
from sqlalchemy.pool import StaticPool  # noqa: E402
from sqlalchemy_utils import StringEncryptedType  # noqa: E402
from sqlalchemy_utils.types.encrypted.encrypted_type import AesGcmEngine  # noqa: E402
from tink import aead as tink_aead  # noqa: E402

pytestmark = pytest.mark.benchmark(min_time=0.0001, max_time=0.3)

TODAY = datetime.date(2026, 11, 30)
VALUES: dict[str, FieldValue] = {
    "email": Email("alice.smith@example.com"),
    "address": PostalAddress(
        region_code="DE",
        address_lines=("Hauptstraße 123, Hinterhaus, 3. OG links",),
        locality="Berlin",
        postal_code="10115",
        sublocality="Mitte",
        recipients=("Dr. Erika Mustermann-Schmidt",),
    ),
}
FIELD_OF = {"email": "email", "address": "shipping"}
REPEATS = 3
CRYPTO_PEERS = ("vault", "tink", "fernet", "aws-esdk", "aws-esdk-ecdsa")
ROW_PEERS = ("StringEncryptedType", "vault")


def plaintext_of(name: str) -> bytes:
    return normalize(VALUES[name], today=TODAY).canonical


def view_of(name: str) -> bytes:
    normal = normalize(VALUES[name], today=TODAY)
    return _encode_view(normal.masked, "tok_" + "x" * 22, normal.facts)


def _ids(value: object) -> str:
    return f"rep{value}" if isinstance(value, int) else str(value)


def _record(
    benchmark: BenchmarkFixture,
    ratios: RatioTable,
    prefix: str,
    side: str,
    baseline_label: str,
    peers: tuple[str, ...],
    fn: Callable[[], object],
) -> None:
    """Time ``fn``; a baseline round counts for every peer's pair of ``prefix``."""
    assert fn() is not None  # the path works before it is timed
    benchmark.group = prefix
    benchmark(fn)
    if side == "baseline":
        for peer in peers:
            ratios.declare(f"{prefix}: {peer}")
            ratios.add_benchmark(f"{prefix}: {peer}", "baseline", baseline_label, benchmark)
    else:
        ratios.declare(f"{prefix}: {side}")
        ratios.add_benchmark(f"{prefix}: {side}", "subject", side, benchmark)


# -- per value ---------------------------------------------------------------------------------


@dataclass
class CryptoSides:
    """One encrypt and one decrypt callable per side, for one value."""

    encrypt: dict[str, Callable[[], object]]
    decrypt: dict[str, Callable[[], object]]


def _aws_master_key() -> RawMasterKey:
    return RawMasterKey(
        provider_id="pii-vault-bench",
        key_id=b"bench-kek",
        wrapping_key=WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=os.urandom(32),
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        ),
    )


@pytest.fixture(scope="module")
def crypto_sides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CryptoSides]:
    keyring = tmp_path_factory.mktemp("peers-keyring") / "keyring.json"
    create_keyring(keyring)
    keys = KeyHierarchy(
        LocalKeyProvider(keyring), subject_limits=WARM_LIMITS, data_limits=WARM_LIMITS
    )
    subject = keys.new_subject_key(SUBJECT)
    material, _ = keys.new_data_key(subject, FIELD)
    cached_cipher, dek_id = keys.cached_cipher, material.dek_id

    aesgcm = AESGCM(os.urandom(32))
    tink_aead.register()
    tink_primitive = tink.new_keyset_handle(tink_aead.aead_key_templates.AES256_GCM).primitive(
        tink_aead.Aead
    )
    fernet = Fernet(Fernet.generate_key())
    esdk = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    master_key = _aws_master_key()
    unsigned = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    urandom = os.urandom

    sides: dict[str, CryptoSides] = {}
    for name in VALUES:
        pt, view = plaintext_of(name), view_of(name)
        nonce = urandom(12)
        raw_blob = nonce + aesgcm.encrypt(nonce, pt, None)
        cipher = cached_cipher(dek_id)
        assert cipher is not None
        vault_blob = cipher.seal_value(pt)
        tink_blob = tink_primitive.encrypt(pt, b"")
        fernet_blob = fernet.encrypt(pt)
        esdk_blob = esdk.encrypt(source=pt, key_provider=master_key, algorithm=unsigned)[0]
        esdk_signed_blob = esdk.encrypt(source=pt, key_provider=master_key)[0]

        def raw_encrypt(pt: bytes = pt) -> bytes:
            nonce = urandom(12)
            return nonce + aesgcm.encrypt(nonce, pt, None)

        def raw_decrypt(blob: bytes = raw_blob) -> bytes:
            return aesgcm.decrypt(blob[:12], blob[12:], None)

        def vault_encrypt(pt: bytes = pt, view: bytes = view) -> tuple[bytes, bytes]:
            cipher = cached_cipher(dek_id)
            assert cipher is not None
            return cipher.seal_value(pt), cipher.seal_view(view)

        def vault_decrypt(blob: bytes = vault_blob) -> bytes:
            cipher = cached_cipher(dek_id)
            assert cipher is not None
            return cipher.open_value(blob)

        def esdk_encrypt(pt: bytes = pt) -> bytes:
            return bytes(esdk.encrypt(source=pt, key_provider=master_key, algorithm=unsigned)[0])

        def esdk_decrypt(blob: bytes = esdk_blob) -> bytes:
            return bytes(esdk.decrypt(source=blob, key_provider=master_key)[0])

        def esdk_signed_encrypt(pt: bytes = pt) -> bytes:
            return bytes(esdk.encrypt(source=pt, key_provider=master_key)[0])

        def esdk_signed_decrypt(blob: bytes = esdk_signed_blob) -> bytes:
            return bytes(esdk.decrypt(source=blob, key_provider=master_key)[0])

        assert raw_decrypt() == vault_decrypt() == esdk_decrypt() == esdk_signed_decrypt() == pt
        assert tink_primitive.decrypt(tink_blob, b"") == fernet.decrypt(fernet_blob) == pt
        sides[name] = CryptoSides(
            encrypt={
                "baseline": raw_encrypt,
                "vault": vault_encrypt,
                "tink": lambda pt=pt: tink_primitive.encrypt(pt, b""),
                "fernet": lambda pt=pt: fernet.encrypt(pt),
                "aws-esdk": esdk_encrypt,
                "aws-esdk-ecdsa": esdk_signed_encrypt,
            },
            decrypt={
                "baseline": raw_decrypt,
                "vault": vault_decrypt,
                "tink": lambda blob=tink_blob: tink_primitive.decrypt(blob, b""),
                "fernet": lambda blob=fernet_blob: fernet.decrypt(blob),
                "aws-esdk": esdk_decrypt,
                "aws-esdk-ecdsa": esdk_signed_decrypt,
            },
        )
    return sides


# Each repetition runs the baseline and then every peer: a burst of load from a
# neighbour spoils one repetition of a side, not all of its rounds.
CRYPTO_CASES = pytest.mark.parametrize(
    ("value", "op", "rep", "side"),
    [
        (value, op, rep, side)
        for value in VALUES
        for op in ("encrypt", "decrypt")
        for rep in range(REPEATS)
        for side in ("baseline", *CRYPTO_PEERS)
    ],
    ids=_ids,
)


@CRYPTO_CASES
def test_crypto_peer(
    benchmark: BenchmarkFixture,
    ratios: RatioTable,
    crypto_sides: dict[str, CryptoSides],
    value: str,
    op: str,
    rep: int,
    side: str,
) -> None:
    fn = getattr(crypto_sides[value], op)[side]
    prefix = f"peers {value} {op}"
    _record(benchmark, ratios, prefix, side, "raw AESGCM", CRYPTO_PEERS, fn)


# -- per stored row ----------------------------------------------------------------------------


@dataclass
class RowSides:
    put_get: dict[str, Callable[[], object]]


def _table_engine(column_type: Any) -> tuple[sa.Engine, sa.Table]:
    engine = sa.create_engine("sqlite://", poolclass=StaticPool)
    table = sa.Table(
        "contacts",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("value", column_type, nullable=False),
    )
    table.metadata.create_all(engine)
    return engine, table


def _insert_select(engine: sa.Engine, table: sa.Table, text: str) -> Callable[[], object]:
    ids = itertools.count(1)
    insert = table.insert()
    select = sa.select(table.c.value).where(table.c.id == sa.bindparam("row_id"))

    def put_get() -> object:
        row_id = next(ids)
        with engine.begin() as conn:
            conn.execute(insert, {"id": row_id, "value": text})
        with engine.begin() as conn:
            got = conn.execute(select, {"row_id": row_id}).scalar_one()
        assert got == text
        return got

    return put_get


@pytest.fixture(scope="module")
def vault_app() -> Iterator[Any]:
    from load_support import bench_policy_text

    from vault.bootstrap.app import build_app, init_data_dir
    from vault.config import Settings

    shm = Path("/dev/shm")  # noqa: S108 (a fresh private directory inside it)
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="vault-peers-", dir=parent) as tmp:
        data_dir = Path(tmp) / "vault"
        init_data_dir(data_dir)
        policy = Path(tmp) / "policy.toml"
        policy.write_text(bench_policy_text(), encoding="utf-8")
        with build_app(Settings(data_dir=data_dir, policy_path=policy)) as app:
            yield app


@pytest.fixture(scope="module")
def row_sides(vault_app: Any) -> dict[str, RowSides]:
    sides: dict[str, RowSides] = {}
    for name, value in VALUES.items():
        text = plaintext_of(name).decode()
        plain = _table_engine(sa.Unicode)
        encrypted = _table_engine(StringEncryptedType(sa.Unicode, os.urandom(32), AesGcmEngine))
        subjects = (f"peer-{name}-{n}" for n in itertools.count())
        field = FIELD_OF[name]

        def vault_put_get(value: FieldValue = value, field: str = field, subjects=subjects) -> Any:
            subject = next(subjects)
            vault_app.vault.put_field("registration", subject, field, value)
            read = vault_app.vault.get_field("privacy-desk", subject, field, "plaintext", "dsar")
            return read

        sides[name] = RowSides(
            put_get={
                "baseline": _insert_select(*plain, text),
                "StringEncryptedType": _insert_select(*encrypted, text),
                "vault": vault_put_get,
            }
        )
    return sides


ROW_CASES = pytest.mark.parametrize(
    ("value", "rep", "side"),
    [
        (value, rep, side)
        for value in VALUES
        for rep in range(REPEATS)
        for side in ("baseline", *ROW_PEERS)
    ],
    ids=_ids,
)


@ROW_CASES
def test_row_peer(
    benchmark: BenchmarkFixture,
    ratios: RatioTable,
    row_sides: dict[str, RowSides],
    value: str,
    rep: int,
    side: str,
) -> None:
    fn = row_sides[value].put_get[side]
    prefix = f"peers row {value} insert+select"
    _record(benchmark, ratios, prefix, side, "plain column", ROW_PEERS, fn)
