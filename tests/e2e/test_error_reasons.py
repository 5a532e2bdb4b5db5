"""Every error carries a machine-readable reason, end to end over mTLS (``docs/errors.md``).

One real server, on the default policy plus a few test grants and tight
budgets for the callers the rate-limit tests spend. Each test provokes one
reason and asserts the status code, the ``google.rpc.ErrorInfo`` (domain
``pii-vault``, reason) and, for a rate limit, the ``RetryInfo``. The hidden
denials are attacked as a prober would: a thing that exists but may not be
seen must answer with the same code, message *and* reason as one that does
not exist. ``SEALED`` is asserted in ``test_sealed``, ``UNAVAILABLE`` (a
full disk) in ``test_disk_full``; ``DRAINING`` (``tests/transport/
test_refusal_reasons.py``), ``CONCURRENT_CHANGE``, ``FAILED_PRECONDITION``,
``FIELD_EXISTS`` (a canary is planted locally, not over gRPC) and
``INTERNAL`` (``tests/transport/test_status.py``) have no call that provokes
them on demand over the wire.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pii_vault_client.v1 import vault_pb2 as pb
from pii_vault_client.v1 import vault_pb2_grpc as pb_grpc

from vault.client import VaultClient
from vault.client import error_reason as client_reason
from vault.errors import ERROR_DOMAIN, Reason

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).parents[2] / "docs" / "errors.md"
PHONE = pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567"))
OTHER_PHONE = pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4568"))
PAY_TOKEN = pb.FieldValue(
    payment_token=pb.PaymentToken(provider="stripe", token="pm_1Q2w3E4r5T6y7U8iF3A9")
)
SECRET_PAN = "4000 0000 0000 0003"  # fails Luhn: must never come back in an error

TEST_POLICY = """
[[callers.privacy-desk.grants]]      # consent: phone in plaintext for marketing_sms
actions = ["get"]
field_types = ["phone"]
views = ["plaintext"]
purposes = ["marketing_sms"]

[[callers.privacy-desk.grants]]      # the enumeration alarm needs a searching caller
actions = ["find"]
field_types = ["phone"]

[[callers.admin.grants]]             # a caller whose put budget the tests may spend
actions = ["put"]
field_types = ["name"]

[limits.callers.registration]
search_per_second = 0.01
search_burst = 2

[limits.callers.admin]
put_per_second = 0.01
put_burst = 1

[limits.callers.deletion]
denials_per_second = 0.01
denials_burst = 1

[limits.callers.privacy-desk]
search_alarm_window_seconds = 600
search_alarm_misses = 1
"""


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_vault_server: type[VaultServer]
) -> Iterator[VaultServer]:
    base = tmp_path_factory.mktemp("error-reasons")
    policy = base / "policy.toml"
    default = (resources.files("vault.policy") / "default_policy.toml").read_text("utf-8")
    policy.write_text(default + TEST_POLICY, encoding="utf-8")
    server = start_vault_server(base / "vault", env={"PII_VAULT_POLICY": str(policy)})
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.output


@pytest.fixture(scope="module")
def clients(server: VaultServer) -> dict[str, VaultClient]:
    names = ("registration", "checkout", "deletion", "privacy-desk", "admin")
    return {name: server.client(name) for name in names}


def fails(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail, read straight from the status trailer (no client in between)."""
    status = rpc_status.from_call(cast(grpc.Call, error))
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def error_reason(error: grpc.RpcError) -> str:
    info = error_info(error)
    return "" if info is None else info.reason


def retry_delay(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay in seconds, if the status carries one."""
    status = rpc_status.from_call(cast(grpc.Call, error))
    for detail in status.details if status is not None else ():
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(retry):
            return float(retry.retry_delay.ToTimedelta().total_seconds())
    return None


def assert_error(error: grpc.RpcError, code: grpc.StatusCode, reason: Reason) -> None:
    info = error_info(error)
    assert info is not None, f"{error.code()} {error.details()} carries no ErrorInfo"
    assert (error.code(), info.domain, info.reason) == (code, ERROR_DOMAIN, reason.value)
    assert error_reason(error) == client_reason(error) == reason.value  # the client reads it too


def answer(error: grpc.RpcError) -> tuple[grpc.StatusCode, str | None, str]:
    """What a prober sees: code, message and reason."""
    return error.code(), error.details(), error_reason(error)


def put(
    client: VaultClient,
    subject: str,
    field: str,
    value: pb.FieldValue,
    idempotency_key: str = "",
) -> pb.FieldView:
    request = pb.PutFieldRequest(
        subject_id=subject, field=field, value=value, idempotency_key=idempotency_key
    )
    return client.vault.PutField(request, timeout=30).view


def get(
    client: VaultClient,
    subject: str,
    field: str,
    view: pb.View.ValueType = pb.VIEW_MASKED,
    purpose: str = "",
) -> pb.GetFieldResponse:
    request = pb.GetFieldRequest(subject_id=subject, field=field, view=view, purpose=purpose)
    return client.vault.GetField(request, timeout=30)


def new_subject() -> str:
    return f"reasons-{uuid.uuid4()}"


# -- the table ----------------------------------------------------------------------------------
def test_every_reason_is_in_the_docs_table_and_every_row_is_a_reason() -> None:
    rows = re.findall(r"^\| `([A-Z_]+)` \| `([A-Z_]+)` \|", DOCS.read_text("utf-8"), re.MULTILINE)
    documented = [reason for reason, _code in rows]
    assert sorted(documented) == sorted(member.value for member in Reason)
    assert len(documented) == len(set(documented)), "a reason has two rows"
    codes = {code.name for code in grpc.StatusCode}
    assert {code for _reason, code in rows} <= codes


# -- one test per reason ------------------------------------------------------------------------
def test_invalid_argument(clients: dict[str, VaultClient]) -> None:
    card = pb.FieldValue(card=pb.PaymentCard(pan=SECRET_PAN, exp_month=12, exp_year=2040))
    error = fails(lambda: put(clients["checkout"], new_subject(), "card.primary", card))
    assert_error(error, grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT)
    assert "value.card.pan" in (error.details() or "")
    assert SECRET_PAN not in str(error) and SECRET_PAN.replace(" ", "") not in str(error)


def stranger_certificate(data_dir: Path) -> tuple[bytes, bytes]:
    """A client certificate the server's own CA signed that names two callers, so no one."""
    tls = data_dir / "tls"
    ca_cert = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "registration"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "checkout"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def test_unauthenticated(server: VaultServer) -> None:
    cert, key = stranger_certificate(server.data_dir)
    ca = (server.data_dir / "tls" / "ca.crt").read_bytes()
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    with grpc.secure_channel(server.target, credentials) as channel:
        stranger = pb_grpc.VaultServiceStub(channel)
        request = pb.GetFieldRequest(subject_id=new_subject(), field="phone")
        error = fails(lambda: stranger.GetField(request, timeout=30))
    assert_error(error, grpc.StatusCode.UNAUTHENTICATED, Reason.UNAUTHENTICATED)


def test_policy_denied(clients: dict[str, VaultClient]) -> None:
    error = fails(
        lambda: get(clients["registration"], new_subject(), "phone", pb.VIEW_PLAINTEXT, "dsar")
    )
    assert_error(error, grpc.StatusCode.PERMISSION_DENIED, Reason.POLICY_DENIED)


def test_purpose_required(clients: dict[str, VaultClient]) -> None:
    subject = new_subject()
    put(clients["registration"], subject, "phone", PHONE)
    error = fails(lambda: get(clients["privacy-desk"], subject, "phone", pb.VIEW_PLAINTEXT))
    assert_error(error, grpc.StatusCode.PERMISSION_DENIED, Reason.PURPOSE_REQUIRED)


def test_consent_required(clients: dict[str, VaultClient]) -> None:
    subject = new_subject()
    put(clients["registration"], subject, "phone", PHONE)
    desk = clients["privacy-desk"]
    error = fails(lambda: get(desk, subject, "phone", pb.VIEW_PLAINTEXT, "marketing_sms"))
    assert_error(error, grpc.StatusCode.PERMISSION_DENIED, Reason.CONSENT_REQUIRED)


def test_not_found(clients: dict[str, VaultClient]) -> None:
    error = fails(lambda: get(clients["registration"], new_subject(), "phone"))
    assert_error(error, grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)


def test_subject_shredded(clients: dict[str, VaultClient]) -> None:
    subject = new_subject()
    put(clients["registration"], subject, "phone", PHONE)
    clients["deletion"].vault.ShredSubject(
        pb.ShredSubjectRequest(subject_id=subject, reason="test", request_id=str(uuid.uuid4())),
        timeout=30,
    )
    for call in (
        lambda: get(clients["registration"], subject, "phone"),
        lambda: put(clients["registration"], subject, "phone", PHONE),
    ):
        assert_error(fails(call), grpc.StatusCode.FAILED_PRECONDITION, Reason.SUBJECT_SHREDDED)


def test_legal_hold(clients: dict[str, VaultClient]) -> None:
    subject = new_subject()
    put(clients["registration"], subject, "phone", PHONE)
    clients["privacy-desk"].vault.SetLegalHold(
        pb.SetLegalHoldRequest(subject_id=subject, hold=True, reason="litigation"), timeout=30
    )
    shred = pb.ShredSubjectRequest(subject_id=subject, reason="test", request_id=str(uuid.uuid4()))
    for call in (
        lambda: clients["deletion"].vault.ShredSubject(shred, timeout=30),  # queued
        lambda: put(clients["registration"], subject, "phone", OTHER_PHONE),
        lambda: clients["deletion"].vault.DeleteField(
            pb.DeleteFieldRequest(subject_id=subject, field="phone"), timeout=30
        ),
    ):
        assert_error(fails(call), grpc.StatusCode.FAILED_PRECONDITION, Reason.LEGAL_HOLD)


def test_idempotency_stale(clients: dict[str, VaultClient]) -> None:
    subject, key = new_subject(), str(uuid.uuid4())
    registration = clients["registration"]
    put(registration, subject, "phone", PHONE, idempotency_key=key)
    put(registration, subject, "phone", OTHER_PHONE)  # replaced since
    error = fails(lambda: put(registration, subject, "phone", PHONE, idempotency_key=key))
    assert_error(error, grpc.StatusCode.FAILED_PRECONDITION, Reason.IDEMPOTENCY_STALE)


def test_idempotency_mismatch(clients: dict[str, VaultClient]) -> None:
    subject, key = new_subject(), str(uuid.uuid4())
    registration = clients["registration"]
    put(registration, subject, "phone", PHONE, idempotency_key=key)
    error = fails(lambda: put(registration, subject, "phone", OTHER_PHONE, idempotency_key=key))
    assert_error(error, grpc.StatusCode.ALREADY_EXISTS, Reason.IDEMPOTENCY_MISMATCH)


def assert_rate_limited(error: grpc.RpcError, reason: Reason) -> None:
    assert_error(error, grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
    delay = retry_delay(error)
    assert delay is not None and delay > 0, "a rate limit says how long to wait"


def test_search_rate_limited(clients: dict[str, VaultClient]) -> None:
    request = pb.FindSubjectsRequest(value=PHONE)
    registration = clients["registration"]
    error = fails(lambda: [registration.vault.FindSubjects(request, timeout=30) for _ in range(5)])
    assert_rate_limited(error, Reason.SEARCH_RATE_LIMITED)


def test_put_rate_limited(clients: dict[str, VaultClient]) -> None:
    name = pb.FieldValue(name="Mari Maasikas")
    admin = clients["admin"]
    error = fails(lambda: [put(admin, new_subject(), "name", name) for _ in range(5)])
    assert_rate_limited(error, Reason.PUT_RATE_LIMITED)


def test_denial_rate_limited(clients: dict[str, VaultClient]) -> None:
    deletion = clients["deletion"]
    first = fails(lambda: get(deletion, new_subject(), "phone"))
    assert_error(first, grpc.StatusCode.PERMISSION_DENIED, Reason.POLICY_DENIED)
    error = fails(lambda: [get(deletion, new_subject(), "phone") for _ in range(5)])
    assert_rate_limited(error, Reason.DENIAL_RATE_LIMITED)


def test_enumeration_alarm(clients: dict[str, VaultClient]) -> None:
    desk = clients["privacy-desk"]

    def search_unknown_numbers() -> None:
        for last in range(10):
            number = f"+372 5999 99{last:02d}"
            value = pb.FieldValue(phone=pb.PhoneNumber(number=number))
            desk.vault.FindSubjects(pb.FindSubjectsRequest(value=value), timeout=30)

    assert_rate_limited(fails(search_unknown_numbers), Reason.ENUMERATION_ALARM)


def test_limit_exceeded(clients: dict[str, VaultClient]) -> None:
    items = [pb.GetFieldRequest(subject_id="s", field="phone") for _ in range(101)]
    error = fails(
        lambda: clients["registration"].vault.BatchGetFields(
            pb.BatchGetFieldsRequest(items=items), timeout=30
        )
    )
    assert_error(error, grpc.StatusCode.RESOURCE_EXHAUSTED, Reason.LIMIT_EXCEEDED)
    assert retry_delay(error) is None, "waiting does not help"


def test_tampered(server: VaultServer, clients: dict[str, VaultClient]) -> None:
    subject = new_subject()
    put(clients["registration"], subject, "phone", PHONE)
    with closing(sqlite3.connect(server.data_dir / "vault.db", timeout=30)) as db, db:
        (view_ct,) = db.execute(
            "SELECT view_ct FROM fields WHERE subject_id = ? AND field = 'phone'", (subject,)
        ).fetchone()
        flipped = bytes(view_ct[:14]) + bytes([view_ct[14] ^ 0xFF]) + bytes(view_ct[15:])
        db.execute(
            "UPDATE fields SET view_ct = ? WHERE subject_id = ? AND field = 'phone'",
            (flipped, subject),
        )
    error = fails(lambda: get(clients["registration"], subject, "phone"))
    assert_error(error, grpc.StatusCode.DATA_LOSS, Reason.TAMPERED)


# -- hidden denials: the same answer, reason included ------------------------------------------
def test_a_field_of_a_type_the_caller_cannot_read_answers_as_a_missing_field(
    clients: dict[str, VaultClient],
) -> None:
    subject = new_subject()
    put(clients["registration"], subject, "phone", PHONE)
    checkout = clients["checkout"]  # may read addresses, cards and tokens: never a phone
    hidden = fails(lambda: get(checkout, subject, "phone"))
    missing = fails(lambda: get(checkout, subject, "no-such-field"))
    unknown_subject = fails(lambda: get(checkout, new_subject(), "phone"))
    assert answer(hidden) == answer(missing) == answer(unknown_subject)
    assert_error(hidden, grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)


def test_a_subject_whose_fields_the_caller_cannot_see_answers_as_an_unknown_subject(
    clients: dict[str, VaultClient],
) -> None:
    subject = new_subject()
    put(clients["registration"], subject, "phone", PHONE)
    checkout = clients["checkout"]

    def list_fields(subject_id: str) -> object:
        return checkout.vault.ListFields(pb.ListFieldsRequest(subject_id=subject_id), timeout=30)

    hidden = fails(lambda: list_fields(subject))
    unknown = fails(lambda: list_fields(new_subject()))
    assert answer(hidden) == answer(unknown)
    assert_error(hidden, grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)


def test_a_token_of_a_field_the_caller_may_not_detokenize_answers_as_an_unknown_token(
    clients: dict[str, VaultClient],
) -> None:
    subject = new_subject()
    phone_token = put(clients["registration"], subject, "phone", PHONE).token
    pay_token = put(clients["checkout"], subject, "payment_token.stripe", PAY_TOKEN).token
    # A token of the same shape that no field holds: the real one with its last character changed.
    unknown_token = pay_token[:-1] + ("a" if pay_token[-1] != "a" else "b")
    checkout = clients["checkout"]

    def detokenize(token: str) -> object:
        request = pb.DetokenizeRequest(token=token, purpose="checkout")
        return checkout.vault.Detokenize(request, timeout=30)

    detokenize(pay_token)  # the caller may detokenize payment tokens
    hidden = fails(lambda: detokenize(phone_token))
    unknown = fails(lambda: detokenize(unknown_token))
    assert answer(hidden) == answer(unknown)
    assert_error(hidden, grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)
