"""``pii-vault``: run the vault, and call it as one of the callers.

Values are read from standard input, never from arguments, so that personal
data does not end up in shell history or the process list.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2

from vault import config
from vault.client import DEFAULT_TARGET, VaultClient
from vault.crypto.documents import (
    ANY_TYPE,
    DSAR_EXPORT,
    SHRED_RECEIPT,
    DocumentError,
    strict_loads,
    verify_file,
)
from vault.domain.shredding import anchor_from_fields, receipt_document, signed_document
from vault.errors import VaultError
from vault.v1 import vault_pb2 as pb

if TYPE_CHECKING:
    from google.protobuf import timestamp_pb2

    from vault.bootstrap.app import PolicyHolder

log = logging.getLogger("vault")

VALUE_TYPES = ("phone", "email", "address", "card", "payment_token", "name", "date_of_birth")
DOCUMENT_TYPES: dict[str, str | frozenset[str]] = {
    "any": ANY_TYPE,
    "receipt": SHRED_RECEIPT,
    "export": DSAR_EXPORT,
}
POLICY_ACTIONS = (
    "put", "get", "detokenize", "find", "delete", "shred", "export", "hold", "consent", "admin"
)  # fmt: skip


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"data directory (VAULT_DATA_DIR, default {config.DEFAULT_DATA_DIR})",
    )


def _add_client(parser: argparse.ArgumentParser) -> None:
    _add_data_dir(parser)
    parser.add_argument("--as", dest="caller", required=True, help="client certificate to use")
    parser.add_argument(
        "--target", default=os.environ.get("VAULT_TARGET", DEFAULT_TARGET), help="host:port"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pii-vault", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create keyring, dev TLS, policy and database")
    _add_data_dir(init)

    serve = commands.add_parser("serve", help="serve the vault over mutual TLS")
    _add_data_dir(serve)
    serve.add_argument("--listen", help=f"HOST:PORT (default {config.DEFAULT_LISTEN})")
    serve.add_argument("--database-url", help="SQLAlchemy URL of the data store")
    serve.add_argument("--key-database-url", help="separate database for wrapped keys")
    serve.add_argument("--key-provider", help="master key URI, e.g. local:///path/keyring.json")
    serve.add_argument("--policy", dest="policy_path", help="policy file (default DIR/policy.toml)")
    serve.add_argument("--workers", type=int, help="processes sharing the port")
    serve.add_argument("--threads", type=int, help="RPC threads per process")
    serve.add_argument(
        "--init", action="store_true", help="initialise the data directory first if it is empty"
    )
    serve.add_argument(
        "--plaintext",
        action="store_true",
        default=None,
        help="serve without TLS (loopback only; caller from x-vault-caller metadata)",
    )
    serve.add_argument(
        "--retention", dest="retention_path", help="retention rules (default DIR/retention.toml)"
    )
    serve.add_argument(
        "--retention-interval",
        type=float,
        help="seconds between retention and maintenance runs (default 3600; 0 turns them off)",
    )

    put = commands.add_parser("put", help="store a value read from stdin")
    _add_client(put)
    put.add_argument("subject_id")
    put.add_argument("field")
    put.add_argument("--type", required=True, choices=VALUE_TYPES)
    put.add_argument("--idempotency-key", default="")

    get = commands.add_parser("get", help="read a field")
    _add_client(get)
    get.add_argument("subject_id")
    get.add_argument("field")
    get.add_argument("--view", default="masked", choices=("masked", "token", "plaintext"))
    get.add_argument("--purpose", default="")

    find = commands.add_parser("find", help="find subjects holding a value read from stdin")
    _add_client(find)
    find.add_argument("--type", required=True, choices=VALUE_TYPES)

    delete = commands.add_parser("delete-field", help="crypto-shred one field")
    _add_client(delete)
    delete.add_argument("subject_id")
    delete.add_argument("field")

    shred = commands.add_parser("shred", help="crypto-shred a subject and save its receipt")
    _add_client(shred)
    shred.add_argument("subject_id")
    shred.add_argument("--reason", required=True)
    shred.add_argument("--request-id", required=True, help="repeat it to get the same receipt")
    shred.add_argument("--receipt-out", help="write the signed receipt to this file")

    hold = commands.add_parser("hold", help="set or release a legal hold")
    _add_client(hold)
    hold.add_argument("subject_id")
    hold.add_argument("--release", action="store_true")
    hold.add_argument("--reason", default="")

    receipts = commands.add_parser("receipts", help="check signed shred receipts and exports")
    receipt_commands = receipts.add_subparsers(dest="receipts_command", required=True)
    verify = receipt_commands.add_parser("verify", help="verify a receipt file's signature")
    _add_data_dir(verify)
    verify.add_argument("file")
    verify.add_argument("--public-key", help="receipt public key (default DIR/receipt-signing.pub)")
    verify.add_argument(
        "--type",
        choices=sorted(DOCUMENT_TYPES),
        default="any",
        help="the kind of document expected (default: a receipt or an export)",
    )

    retention = commands.add_parser("retention", help="apply the retention rules")
    retention_commands = retention.add_subparsers(dest="retention_command", required=True)
    sweep = retention_commands.add_parser(
        "run", help="delete expired cards and shred idle subjects now, showing progress"
    )
    _add_data_dir(sweep)
    sweep.add_argument("--database-url", help="SQLAlchemy URL of the data store")
    sweep.add_argument("--key-database-url", help="separate database for wrapped keys")
    sweep.add_argument("--key-provider", help="master key URI, e.g. local:///path/keyring.json")
    sweep.add_argument("--policy", dest="policy_path", help="policy file (default DIR/policy.toml)")
    sweep.add_argument(
        "--retention", dest="retention_path", help="retention rules (default DIR/retention.toml)"
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="count what the rules would destroy; change nothing"
    )

    audit = commands.add_parser("audit", help="read or verify the hash-chained audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_verify = audit_commands.add_parser(
        "verify", help="recompute the keyed chain, check it against anchors (exit 1 if broken)"
    )
    _add_client(audit_verify)
    audit_verify.add_argument(
        "--anchor",
        dest="anchors",
        action="append",
        default=[],
        metavar="FILE",
        help="a receipt, an export or an audit sink (JSON lines) whose positions and hashes "
        "the chain must still hold; repeatable",
    )
    audit_verify.add_argument(
        "--public-key", help="receipt public key (default DIR/receipt-signing.pub)"
    )
    audit_list = audit_commands.add_parser("list", help="page through events as JSON lines")
    _add_client(audit_list)
    audit_list.add_argument("--subject", default="")
    audit_list.add_argument("--caller", dest="event_caller", default="")
    audit_list.add_argument("--action", default="")
    audit_list.add_argument("--limit", type=int, default=100)

    export = commands.add_parser("export", help="export a subject for a data-subject request")
    _add_client(export)
    export.add_argument("subject_id")
    export.add_argument("--purpose", default="dsar")
    export.add_argument("--out", help="write the signed export to this file")

    consent = commands.add_parser("consent", help="record or withdraw a subject's consent")
    _add_client(consent)
    consent.add_argument("subject_id")
    consent.add_argument("purpose")
    consent.add_argument("--withdraw", action="store_true")

    canary = commands.add_parser("canary", help="plant a canary field (value on stdin)")
    canary_commands = canary.add_subparsers(dest="canary_command", required=True)
    plant = canary_commands.add_parser(
        "plant", help="store a decoy value whose reads sound an alarm"
    )
    _add_data_dir(plant)
    plant.add_argument("subject_id")
    plant.add_argument("field")
    plant.add_argument("--type", required=True, choices=VALUE_TYPES)

    health = commands.add_parser("health", help="exit 0 when the vault answers SERVING")
    _add_client(health)

    keys = commands.add_parser("keys", help="master keys: rotate, rewrap, status")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    _add_client(key_commands.add_parser("rotate", help="make a new master key version current"))
    rewrap = key_commands.add_parser(
        "rewrap", help="rewrap every key under the current version; retire unused old ones"
    )
    _add_client(rewrap)
    rewrap.add_argument("--batch-size", type=int, default=0, help="keys per transaction")
    _add_client(key_commands.add_parser("status", help="master key versions and their use"))

    policy = commands.add_parser("policy", help="inspect the access policy (no server needed)")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    explain = policy_commands.add_parser(
        "explain", help="ALLOW (exit 0) or DENY (exit 1) for one call, with the grant or reason"
    )
    explain.add_argument("--as", dest="caller", required=True, help="the caller (certificate CN)")
    explain.add_argument("action", choices=POLICY_ACTIONS)
    explain.add_argument("field", nargs="?", help="field name, e.g. card.primary")
    explain.add_argument("--type", choices=VALUE_TYPES, help="default: the field name's first part")
    explain.add_argument("--view", choices=("masked", "token", "plaintext"), help="get only")
    explain.add_argument("--purpose", default="")
    source = explain.add_mutually_exclusive_group()
    source.add_argument("--policy", dest="policy_path", help="default DIR/policy.toml")
    source.add_argument("--data-dir", help="data directory whose policy.toml to read")
    return parser


def value_from_text(kind: str, text: str) -> pb.FieldValue:
    """Parse stdin: plain text for simple types, JSON for address and card."""
    text = text.strip()
    if kind == "phone":
        return pb.FieldValue(phone=pb.PhoneNumber(number=text))
    if kind == "email":
        return pb.FieldValue(email=text)
    if kind == "name":
        return pb.FieldValue(name=text)
    if kind == "payment_token":
        provider, _, token = text.partition(":")
        return pb.FieldValue(payment_token=pb.PaymentToken(provider=provider, token=token))
    if kind == "date_of_birth":
        year, month, day = (int(part) for part in text.split("-"))
        return json_format.ParseDict(
            {"dateOfBirth": {"year": year, "month": month, "day": day}}, pb.FieldValue()
        )
    return json_format.ParseDict({kind: json.loads(text)}, pb.FieldValue())


def _print(message: object) -> None:
    print(json_format.MessageToJson(message, indent=2))  # type: ignore[arg-type]


def run_client(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or os.environ.get("VAULT_DATA_DIR", config.DEFAULT_DATA_DIR))
    with VaultClient.for_caller(data_dir, args.caller, args.target) as client:
        try:
            if args.command == "put":
                value = value_from_text(args.type, sys.stdin.read())
                _print(
                    client.vault.PutField(
                        pb.PutFieldRequest(
                            subject_id=args.subject_id,
                            field=args.field,
                            value=value,
                            idempotency_key=args.idempotency_key,
                        )
                    )
                )
            elif args.command == "get":
                view = {
                    "masked": pb.VIEW_MASKED,
                    "token": pb.VIEW_TOKEN,
                    "plaintext": pb.VIEW_PLAINTEXT,
                }
                _print(
                    client.vault.GetField(
                        pb.GetFieldRequest(
                            subject_id=args.subject_id,
                            field=args.field,
                            view=view[args.view],
                            purpose=args.purpose,
                        )
                    )
                )
            elif args.command == "find":
                value = value_from_text(args.type, sys.stdin.read())
                _print(client.vault.FindSubjects(pb.FindSubjectsRequest(value=value)))
            elif args.command == "delete-field":
                _print(
                    client.vault.DeleteField(
                        pb.DeleteFieldRequest(subject_id=args.subject_id, field=args.field)
                    )
                )
            elif args.command == "shred":
                receipt = client.vault.ShredSubject(
                    pb.ShredSubjectRequest(
                        subject_id=args.subject_id, reason=args.reason, request_id=args.request_id
                    )
                ).receipt
                document = receipt_document(receipt.payload, receipt.signature)
                text = json.dumps(document, indent=2, sort_keys=True)
                if args.receipt_out:
                    Path(args.receipt_out).write_text(text + "\n")
                print(text)
            elif args.command == "hold":
                answer = client.vault.SetLegalHold(
                    pb.SetLegalHoldRequest(
                        subject_id=args.subject_id, hold=not args.release, reason=args.reason
                    )
                )
                print("held" if answer.hold else "released")
            elif args.command == "keys":
                return run_keys(client, args)
            elif args.command == "audit" and args.audit_command == "verify":
                return run_audit_verify(client, args, data_dir)
            elif args.command == "audit":
                token = ""
                shown = 0
                while shown < args.limit:
                    page = client.audit.ListEvents(
                        pb.ListEventsRequest(
                            subject_id=args.subject,
                            caller=args.event_caller,
                            action=args.action,
                            page_size=min(args.limit - shown, 1000),
                            page_token=token,
                        )
                    )
                    for event in page.events:
                        print(json_format.MessageToJson(event, indent=None))
                    shown += len(page.events)
                    token = page.next_page_token
                    if not token:
                        break
            elif args.command == "export":
                exported = client.vault.ExportSubject(
                    pb.ExportSubjectRequest(subject_id=args.subject_id, purpose=args.purpose)
                )
                document = signed_document("export", exported.payload, exported.signature)
                text = json.dumps(document, indent=2, sort_keys=True)
                if args.out:
                    Path(args.out).write_text(text + "\n")
                    print(f"exported {len(exported.fields)} fields to {args.out}")
                else:
                    print(text)
            elif args.command == "consent":
                granted = client.vault.SetConsent(
                    pb.SetConsentRequest(
                        subject_id=args.subject_id, purpose=args.purpose, granted=not args.withdraw
                    )
                ).granted
                print("granted" if granted else "withdrawn")
            elif args.command == "health":
                answer = client.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                serving = answer.status == health_pb2.HealthCheckResponse.SERVING
                print("SERVING" if serving else "NOT_SERVING")
                return 0 if serving else 1
        except grpc.RpcError as error:
            print(f"{error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


def run_keys(client: VaultClient, args: argparse.Namespace) -> int:
    """``keys rotate|rewrap|status``: rewrap streams its progress as it goes."""
    from vault.transport.servicer import RETIRED_VERSIONS_METADATA

    if args.keys_command == "rotate":
        rotated = client.keys.RotateMasterKey(pb.RotateMasterKeyRequest())
        print(f"rotated: master key {rotated.key_id} version {rotated.version} is current")
    elif args.keys_command == "rewrap":
        stream = client.keys.RewrapKeys(pb.RewrapKeysRequest(batch_size=args.batch_size))
        for progress in stream:
            print(f"rewrapped {progress.done}/{progress.total}", flush=True)
        trailing = dict(stream.trailing_metadata() or ())
        retired = str(trailing.get(RETIRED_VERSIONS_METADATA, ""))
        if retired:
            print(f"retired master key versions: {retired.replace(',', ', ')}")
        else:
            print("no master key version retired")
    else:
        answer = client.keys.GetKeyStatus(pb.GetKeyStatusRequest())
        for version in answer.versions:
            created = (
                version.created_at.ToDatetime().isoformat(timespec="seconds") + "Z"
                if version.HasField("created_at")
                else "-"
            )
            print(
                f"{version.key_id} v{version.version} {version.state:<8} "
                f"uses={version.uses} created={created}"
            )
        print(_describe_schedule(answer.schedule))
    return 0


def _utc(stamp: timestamp_pb2.Timestamp) -> str:
    return stamp.ToDatetime().isoformat(timespec="seconds") + "Z"


def _describe_schedule(schedule: pb.KeyRotationSchedule) -> str:
    """``keys status``: the rotation schedule, its progress and what receipts promise."""
    last = _utc(schedule.last_rotation) if schedule.HasField("last_rotation") else "-"
    pending = ", ".join(f"v{v}" for v in schedule.versions_pending_retirement) or "none"
    progress = (
        f"last rotation: {last}\n"
        f"keys to rewrap: {schedule.keys_to_rewrap}\n"
        f"versions pending retirement: {pending}"
    )
    if not schedule.enabled:
        return (
            "rotation schedule: off (VAULT_ROTATION_DAYS=0 or maintenance off); "
            "shred receipts promise no backup horizon\n" + progress
        )
    days = schedule.period.ToTimedelta().total_seconds() / 86400
    lines = [
        f"rotation schedule: on, every {days:g} days",
        progress,
        f"next rotation due: {_utc(schedule.next_rotation_due)}",
        f"backup horizon of a shred now: {_utc(schedule.backup_horizon)}",
    ]
    if schedule.overdue:
        lines.append("WARNING: rotation is behind schedule; receipts' horizons are being missed")
    return "\n".join(lines)


def run_canary(args: argparse.Namespace) -> int:
    """Plant a canary locally, as the operator (caller ``admin``)."""
    from vault.bootstrap.app import build_app
    from vault.transport.convert import value_from_proto

    settings = config.from_env({"data_dir": args.data_dir})
    try:
        value = value_from_proto(value_from_text(args.type, sys.stdin.read()), 16 * 1024)
    except (VaultError, ValueError) as error:
        print(f"invalid value: {type(error).__name__}", file=sys.stderr)
        return 1
    app = build_app(settings)
    try:
        app.vault.plant_canary("admin", args.subject_id, args.field, value)
    except VaultError as error:
        print(f"{type(error).__name__}: {error.message}", file=sys.stderr)
        return 1
    finally:
        app.audit.close()
        app.vault.close()
        app.store.dispose()
    print(f"canary planted: {args.subject_id}/{args.field}; any read of it raises an alarm")
    return 0


def run_policy(args: argparse.Namespace) -> int:
    """``policy explain``: decide one call from the policy file; exit 0 allow, 1 deny, 2 error."""
    from vault.policy import Policy, PolicyError
    from vault.policy.explain import ExplainError, explain

    settings = config.from_env({"data_dir": args.data_dir, "policy_path": args.policy_path})
    path = settings.effective_policy_path
    try:
        policy = Policy.load(path)
    except (OSError, PolicyError) as error:
        print(f"cannot use the policy: {error}", file=sys.stderr)
        return 2
    try:
        answer = explain(
            policy, args.caller, args.action, args.field, args.type, args.view, args.purpose
        )
    except ExplainError as error:
        print(f"policy explain: {error}", file=sys.stderr)
        return 2
    print(answer)
    print(f"policy:  {path}")
    return 0 if answer.decision.allowed else 1


def run_receipts(args: argparse.Namespace) -> int:
    """Verify a receipt or export file: 0 valid, 1 invalid (and why), 2 unreadable."""
    data_dir = Path(args.data_dir or os.environ.get("VAULT_DATA_DIR", config.DEFAULT_DATA_DIR))
    public_key = Path(args.public_key or data_dir / "receipt-signing.pub")
    try:
        text = Path(args.file).read_bytes()
        public_pem = public_key.read_bytes()
    except OSError as error:
        print(f"cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        document = verify_file(text, public_pem, DOCUMENT_TYPES[args.type])
    except DocumentError as error:
        print(f"INVALID: {error}", file=sys.stderr)
        return 1
    body = document.body
    anchor = anchor_from_fields(body.get("audit_anchor"))
    anchored = f"; audit chain anchor at position {anchor.sequence}" if anchor else ""
    if document.type == DSAR_EXPORT:
        print(
            f"valid: export of subject {body['subject_id']} for purpose "
            f"{body['purpose']}, {len(body['fields'])} fields{anchored}"
        )
        return 0
    horizon = body.get("backup_horizon")
    backups = (
        f"backups unreadable after {horizon}"
        if horizon is not None
        else "no backup horizon promised (no key rotation schedule ran)"
    )
    print(
        f"valid: subject {body['subject_id']} shredded at {body['shredded_at']}, "
        f"{body['fields_destroyed']} fields; {backups}{anchored}"
    )
    return 0


class AnchorFileError(Exception):
    """An ``--anchor`` file that cannot serve as one (message names the file and why)."""


def read_anchors(path: Path, public_pem: bytes) -> list[tuple[int, bytes]]:
    """The anchors a file holds: a signed receipt or export (its ``audit_anchor``, once
    its signature verifies) or audit sink JSON lines (each line's ``sequence`` and
    ``hash``; lines written before lines carried them are skipped)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AnchorFileError(f"cannot read {path}: {error.strerror}") from None
    try:
        whole: object = strict_loads(data)
    except DocumentError:
        whole = None  # several JSON lines
    if isinstance(whole, dict) and "signature" in whole:
        try:
            document = verify_file(data, public_pem)
        except DocumentError as error:
            raise AnchorFileError(f"{path} is not a document this vault signed: {error}") from None
        anchor = anchor_from_fields(document.body.get("audit_anchor"))
        if anchor is None:
            raise AnchorFileError(f"{path} carries no audit anchor (signed before anchors)")
        return [(anchor.sequence, anchor.hash)]
    anchors: list[tuple[int, bytes]] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = strict_loads(line)
        except DocumentError as error:
            raise AnchorFileError(f"{path} line {number}: {error}") from None
        if not isinstance(event, dict):
            raise AnchorFileError(f"{path} line {number} is not an audit sink line")
        if "sequence" not in event and "hash" not in event:
            continue  # a line from before sink lines carried their position
        anchor = anchor_from_fields(event)
        if anchor is None:
            raise AnchorFileError(f"{path} line {number} has a malformed sequence or hash")
        anchors.append((anchor.sequence, anchor.hash))
    return anchors


MAX_ANCHORS_SENT = 50_000


def thin_anchors(anchors: list[tuple[int, bytes]], limit: int) -> list[tuple[int, bytes]]:
    """At most ``limit`` anchors, evenly spread, always keeping the newest.

    The newest is what catches a cut tail; the spread ones catch a rewrite
    by someone holding the key. Anchors for one position are kept together
    so that disagreeing copies still meet.
    """
    if len(anchors) <= limit:
        return anchors
    ordered = sorted(anchors)
    step = len(ordered) / (limit - 1)
    kept = {ordered[int(i * step)] for i in range(limit - 1)}
    kept.add(ordered[-1])
    return sorted(kept)


def run_audit_verify(client: VaultClient, args: argparse.Namespace, data_dir: Path) -> int:
    """Verify the chain (and any anchors): 0 intact, 1 broken, 2 an anchor file is unusable."""
    anchors: list[tuple[int, bytes]] = []
    if args.anchors:
        public_key = Path(args.public_key or data_dir / "receipt-signing.pub")
        try:
            public_pem = public_key.read_bytes()
            for path in args.anchors:
                anchors += read_anchors(Path(path), public_pem)
        except OSError as error:
            print(f"cannot read {error.filename}: {error.strerror}", file=sys.stderr)
            return 2
        except AnchorFileError as error:
            print(f"cannot use anchor: {error}", file=sys.stderr)
            return 2
    sent = thin_anchors(anchors, MAX_ANCHORS_SENT)
    check = client.audit.VerifyChain(
        pb.VerifyChainRequest(
            anchors=[pb.AuditAnchor(sequence=seq, hash=digest) for seq, digest in sent]
        )
    )
    if check.ok:
        agreed = f"; {check.anchors_checked} anchors agree" if sent else ""
        print(f"audit chain intact: {check.events_checked} events{agreed}")
        return 0
    print(
        f"audit chain BROKEN at position {check.first_bad_position}: {check.problem}"
        f" ({check.events_checked} events verified before it)",
        file=sys.stderr,
    )
    return 1


def run_init(args: argparse.Namespace) -> int:
    from vault.bootstrap.app import init_data_dir

    data_dir = Path(args.data_dir or os.environ.get("VAULT_DATA_DIR", config.DEFAULT_DATA_DIR))
    try:
        made = init_data_dir(data_dir)
    except FileExistsError as error:
        print(str(error), file=sys.stderr)
        return 1
    for path in made:
        print(f"created {path}")
    return 0


def run_retention(args: argparse.Namespace) -> int:
    from vault.bootstrap.app import build_app
    from vault.bootstrap.maintenance import build_sweeper
    from vault.domain.retention import RetentionError, RetentionRules
    from vault.progress import ProgressBar

    names = ("data_dir", "database_url", "key_database_url", "key_provider", "policy_path")
    overrides = {name: getattr(args, name, None) for name in (*names, "retention_path")}
    settings = config.from_env(overrides)
    path = settings.effective_retention_path
    try:
        rules = RetentionRules.load(path)
    except RetentionError as error:
        print(f"invalid retention rules: {error}", file=sys.stderr)
        return 2
    if rules.empty:
        print(f"no retention rules in {path}: nothing to do")
        return 0
    print(f"rules from {path}: {rules.describe()}", file=sys.stderr)
    app = build_app(settings)
    try:
        bar = ProgressBar(sys.stderr, "items due")
        report = build_sweeper(app, rules).run(bar.update, dry_run=args.dry_run)
        bar.finish()
    finally:
        app.audit.close()
        app.vault.close()
        app.store.dispose()
    print(report.summary())
    return 1 if report.errors else 0


def run_serve(args: argparse.Namespace) -> int:
    from vault.bootstrap.app import build_app, init_data_dir, is_initialised
    from vault.bootstrap.maintenance import load_retention, start_maintenance
    from vault.bootstrap.pki import TlsPaths
    from vault.bootstrap.seal import start_sealed_if_unusable
    from vault.transport.server import (
        SERVICE_NAMES,
        ServerOptions,
        TlsFiles,
        build_server,
        serve_until_signalled,
    )

    overrides = {
        name: getattr(args, name, None)
        for name in (
            "data_dir",
            "listen",
            "database_url",
            "key_database_url",
            "key_provider",
            "policy_path",
            "workers",
            "threads",
            "plaintext",
            "retention_path",
            "retention_interval",
        )
    }
    settings = config.from_env(overrides)
    if settings.seal_check_interval <= 0:
        print("refusing to start: VAULT_SEAL_CHECK_INTERVAL must be positive", file=sys.stderr)
        return 2
    if args.init and not is_initialised(settings.data_dir):
        for path in init_data_dir(settings.data_dir):
            log.info("created %s", path)
    if settings.workers > 1:
        return _run_workers(settings.workers)
    try:
        rules = load_retention(settings)
    except ValueError as error:  # RetentionError or a negative interval, naming the key
        print(f"refusing to start: {error}", file=sys.stderr)
        return 2
    tls_paths = TlsPaths.under(settings.data_dir)
    tls = (
        None
        if settings.plaintext
        else TlsFiles(tls_paths.ca_cert, tls_paths.server_cert, tls_paths.server_key)
    )
    # A keyring that is missing or unusable now starts the server sealed (health
    # NOT_SERVING, calls UNAVAILABLE); it unseals by itself once the keyring is back.
    app = build_app(settings, start_sealed=True)
    watcher = start_sealed_if_unusable(app.keys, settings.seal_check_interval)
    server, port, health = build_server(
        app.vault,
        app.shredder,
        ServerOptions(
            listen=settings.listen,
            tls=tls,
            threads=settings.threads,
            max_message_bytes=settings.max_message_bytes,
            reuse_port=os.environ.get("VAULT_REUSE_PORT") == "1",
        ),
        key_admin=app.key_admin,
        audit_reader=app.audit_reader,
        seal=watcher.seal,
        on_auth_failure=lambda method, reason: app.audit.record(
            "", method, outcome="denied", status_code="UNAUTHENTICATED", detail=reason
        ),
        identity=lambda: app.policy().identity,
    )
    watcher.start_watching(health, ("", *SERVICE_NAMES))
    signal.signal(signal.SIGHUP, lambda *_: _reload_policy(app.policy))
    host = settings.listen.rsplit(":", 1)[0]
    log.info("pii-vault serving on %s:%d (%s)", host, port, "plaintext" if tls is None else "mTLS")
    print(f"listening on {host}:{port}", flush=True)
    maintenance = start_maintenance(app, rules, settings.retention_interval)
    serve_until_signalled(server, health, settings.grace_seconds)
    watcher.stop(settings.grace_seconds)
    if maintenance is not None:
        maintenance.stop(settings.grace_seconds)
    app.audit.close()  # buffered masked-read events land before exit
    app.vault.close()
    app.store.dispose()
    return 0


def _reload_policy(holder: PolicyHolder) -> None:
    """SIGHUP: read the policy file again; one that does not load leaves the old in force."""
    try:
        holder.reload()
    except Exception as error:  # OSError, or PolicyError naming the file and the bad place
        log.error("policy not reloaded, keeping the old one: %s", error)
        return
    log.info("policy reloaded from %s", holder.path)


def _run_workers(count: int) -> int:
    """Run ``count`` single-worker processes sharing the port (SO_REUSEPORT)."""
    argv: list[str] = []
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers=") and arg != "--init":
            argv.append(arg)
    env = dict(os.environ, VAULT_REUSE_PORT="1", VAULT_WORKERS="1")
    children = [
        subprocess.Popen([sys.executable, "-m", "vault", *argv, "--workers", "1"], env=env)  # noqa: S603
        for _ in range(count)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)  # each worker reloads its own policy
    return max(child.wait() for child in children)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("VAULT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    if args.command in ("init", "serve", "retention"):
        # Keyring, keys and database files are for this user's eyes only.
        os.umask(0o077)
    if args.command == "init":
        return run_init(args)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "canary":
        return run_canary(args)
    if args.command == "receipts":
        return run_receipts(args)
    if args.command == "policy":
        return run_policy(args)
    if args.command == "retention":
        return run_retention(args)
    return run_client(args)
