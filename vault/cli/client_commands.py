"""The caller commands: each one call (or a few) to a running vault, as one client certificate.

Client-side only: they import the wire types, the client and the signed
documents module, never a server layer (domain, storage, transport,
pydantic settings), so that they start fast and could run on a machine
holding nothing but a client certificate. Settings they need (data
directory, target) are read through ``vault.environment``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2
from pii_vault_client.v1 import vault_pb2 as pb

from vault.cli.connection import (
    CallerMistakeError,
    data_dir_of,
    describe_rpc_error,
    pem_files,
    target_of,
)
from vault.cli.values import UnreadableValueError, value_from_text
from vault.client import VaultClient, VaultError

if TYPE_CHECKING:
    from google.protobuf import timestamp_pb2

ClientCommand = Callable[[VaultClient, argparse.Namespace], int]

# The trailing metadata key on RewrapKeys naming the versions it retired; the
# server's is ``vault.transport.servicer.RETIRED_VERSIONS_METADATA`` (a test
# checks that they agree: the client side may not import the server's).
RETIRED_VERSIONS_METADATA = "x-vault-retired-versions"

# The most anchors ``audit verify`` sends in one request (spread, newest kept).
MAX_ANCHORS_SENT = 50_000

VIEWS = {"masked": pb.VIEW_MASKED, "token": pb.VIEW_TOKEN, "plaintext": pb.VIEW_PLAINTEXT}


def run_client(args: argparse.Namespace) -> int:
    """Call the vault as ``--as`` (or ``--cert``/``--key``). Exit 0 done; 1 the vault refused
    or failed the call (status, reason and message printed); 2 a mistake on this side
    (settings, credentials, stdin, a file), in one line."""
    command = CLIENT_COMMANDS[args.command]
    try:
        pem = pem_files(args)
    except CallerMistakeError as error:
        print(error, file=sys.stderr)
        return 2
    target = target_of(args)
    with VaultClient(target, ca_cert=pem.ca, client_cert=pem.cert, client_key=pem.key) as client:
        try:
            return command(client, args)
        except (grpc.RpcError, VaultError) as error:
            print(describe_rpc_error(error, target), file=sys.stderr)
            return 1
        except UnreadableValueError as error:
            print(f"INVALID_ARGUMENT: {error}", file=sys.stderr)
            return 2
        except OSError as error:  # --out, --receipt-out
            print(f"cannot write {error.filename}: {error.strerror}", file=sys.stderr)
            return 2


def _write_private(path: str, text: str) -> None:
    """Write ``text`` readable by its owner only: an export holds plaintext personal data.

    A file that exists is narrowed to 0600 before anything is written to it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


def _print(message: object) -> None:
    from google.protobuf import json_format

    print(json_format.MessageToJson(message, indent=2))  # type: ignore[arg-type]


def _signed_file_text(label: str, payload: bytes, signature: bytes) -> str:
    from vault.crypto.documents import document_file

    return json.dumps(document_file(label, payload, signature), indent=2, sort_keys=True)


# -- fields ----------------------------------------------------------------------------------
def put(client: VaultClient, args: argparse.Namespace) -> int:
    value = value_from_text(args.type, sys.stdin.read())
    request = pb.PutFieldRequest(
        subject_id=args.subject_id,
        field=args.field,
        value=value,
        idempotency_key=args.idempotency_key,
    )
    _print(client.put_field(request))
    return 0


def get(client: VaultClient, args: argparse.Namespace) -> int:
    request = pb.GetFieldRequest(
        subject_id=args.subject_id, field=args.field, view=VIEWS[args.view], purpose=args.purpose
    )
    _print(client.get_field(request))
    return 0


def find(client: VaultClient, args: argparse.Namespace) -> int:
    value = value_from_text(args.type, sys.stdin.read())
    _print(client.find_subjects(pb.FindSubjectsRequest(value=value)))
    return 0


def delete_field(client: VaultClient, args: argparse.Namespace) -> int:
    _print(client.delete_field(pb.DeleteFieldRequest(subject_id=args.subject_id, field=args.field)))
    return 0


# -- subjects --------------------------------------------------------------------------------
def shred(client: VaultClient, args: argparse.Namespace) -> int:
    receipt = client.shred_subject(
        pb.ShredSubjectRequest(
            subject_id=args.subject_id, reason=args.reason, request_id=args.request_id
        )
    ).receipt
    text = _signed_file_text("receipt", receipt.payload, receipt.signature)
    if args.receipt_out:
        _write_private(args.receipt_out, text + "\n")
    print(text)
    return 0


def hold(client: VaultClient, args: argparse.Namespace) -> int:
    answer = client.set_legal_hold(
        pb.SetLegalHoldRequest(
            subject_id=args.subject_id, hold=not args.release, reason=args.reason
        )
    )
    print("held" if answer.hold else "released")
    return 0


def export(client: VaultClient, args: argparse.Namespace) -> int:
    exported = client.export_subject(
        pb.ExportSubjectRequest(subject_id=args.subject_id, purpose=args.purpose)
    )
    text = _signed_file_text("export", exported.payload, exported.signature)
    if args.out:
        _write_private(args.out, text + "\n")
        print(f"exported {len(exported.fields)} fields to {args.out}")
    else:
        print(text)
    return 0


def consent(client: VaultClient, args: argparse.Namespace) -> int:
    granted = client.set_consent(
        pb.SetConsentRequest(
            subject_id=args.subject_id, purpose=args.purpose, granted=not args.withdraw
        )
    ).granted
    print("granted" if granted else "withdrawn")
    return 0


def health(client: VaultClient, args: argparse.Namespace) -> int:
    """Exit 0 when the vault answers SERVING for ``--service``, 1 otherwise.

    An exec probe needs only a client certificate the server trusts (health
    checks no grant): the dev PKI makes ``probe`` for it, with no grant in
    the policy, so a probe's key opens nothing.
    """
    service = getattr(args, "service", "")
    answer = client.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    print("SERVING" if serving else "NOT_SERVING")
    return 0 if serving else 1


# -- master keys -----------------------------------------------------------------------------
def keys(client: VaultClient, args: argparse.Namespace) -> int:
    """``keys rotate|rewrap|status``."""
    return KEY_COMMANDS[args.keys_command](client, args)


def rotate_keys(client: VaultClient, _args: argparse.Namespace) -> int:
    rotated = client.rotate_master_key(pb.RotateMasterKeyRequest())
    print(f"rotated: master key {rotated.key_id} version {rotated.version} is current")
    return 0


def rewrap_keys(client: VaultClient, args: argparse.Namespace) -> int:
    """Rewrap streams its progress as it goes; the retired versions come in trailing metadata."""
    stream = client.keys.RewrapKeys(pb.RewrapKeysRequest(batch_size=args.batch_size))
    for progress in stream:
        print(f"rewrapped {progress.done}/{progress.total}", flush=True)
    trailing = dict(stream.trailing_metadata() or ())
    retired = str(trailing.get(RETIRED_VERSIONS_METADATA, ""))
    if retired:
        print(f"retired master key versions: {retired.replace(',', ', ')}")
    else:
        print("no master key version retired")
    return 0


def key_status(client: VaultClient, _args: argparse.Namespace) -> int:
    answer = client.get_key_status(pb.GetKeyStatusRequest())
    for version in answer.versions:
        created = (
            version.created_at.ToDatetime().isoformat(timespec="seconds") + "Z"
            if version.HasField("created_at")
            else "-"
        )
        print(
            f"{version.key_id} v{version.version} {_key_state(version.state):<8} "
            f"uses={version.uses} created={created}"
        )
    print(describe_schedule(answer.schedule))
    return 0


def _key_state(state: pb.MasterKeyState.ValueType) -> str:
    return pb.MasterKeyState.Name(state).removeprefix("MASTER_KEY_STATE_").lower()


def _audit_action(name: str) -> pb.AuditAction.ValueType:
    """``--action get`` (or ``key-status``, ``AUDIT_ACTION_GET``) as the filter; "" is any."""
    wire = "AUDIT_ACTION_" + name.upper().replace("-", "_").removeprefix("AUDIT_ACTION_")
    if name and wire not in pb.AuditAction.keys():
        raise SystemExit(f"pii-vault: unknown audit action {name!r} (e.g. get, put, shred)")
    return pb.AuditAction.Value(wire) if name else pb.AUDIT_ACTION_UNSPECIFIED


def _utc(stamp: timestamp_pb2.Timestamp) -> str:
    return stamp.ToDatetime().isoformat(timespec="seconds") + "Z"


def describe_schedule(schedule: pb.KeyRotationSchedule) -> str:
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
            "rotation schedule: off (PII_VAULT_ROTATION_DAYS=0 or maintenance off); "
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


# -- the audit log ---------------------------------------------------------------------------
def audit(client: VaultClient, args: argparse.Namespace) -> int:
    """``audit verify|list``."""
    return AUDIT_COMMANDS[args.audit_command](client, args)


def list_events(client: VaultClient, args: argparse.Namespace) -> int:
    """Page through events as JSON lines, at most ``--limit`` of them."""
    from google.protobuf import json_format

    token = ""
    shown = 0
    while shown < args.limit:
        page = client.list_events(
            pb.ListEventsRequest(
                subject_id=args.subject,
                caller=args.event_caller,
                action=_audit_action(args.action),
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
    return 0


class AnchorFileError(Exception):
    """An ``--anchor`` file that cannot serve as one (message names the file and why)."""


def read_anchors(path: Path, public_pem: bytes) -> list[tuple[int, bytes]]:
    """The anchors a file holds: a signed receipt or export (its ``audit_anchor``, once
    its signature verifies) or audit sink JSON lines (each line's ``sequence`` and
    ``hash``; lines written before lines carried them are skipped)."""
    from vault.crypto.documents import DocumentError, anchor_position, strict_loads, verify_file

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
        anchor = anchor_position(document.body.get("audit_anchor"))
        if anchor is None:
            raise AnchorFileError(f"{path} carries no audit anchor (signed before anchors)")
        return [anchor]
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
        anchor = anchor_position(event)
        if anchor is None:
            raise AnchorFileError(f"{path} line {number} has a malformed sequence or hash")
        anchors.append(anchor)
    return anchors


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


def verify_audit_chain(client: VaultClient, args: argparse.Namespace) -> int:
    """Verify the chain (and any anchors): 0 intact, 1 broken, 2 an anchor file is unusable."""
    anchors: list[tuple[int, bytes]] = []
    if args.anchors:
        public_key = Path(args.public_key or data_dir_of(args) / "receipt-signing.pub")
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
    check = client.verify_chain(
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


KEY_COMMANDS: dict[str, ClientCommand] = {
    "rotate": rotate_keys,
    "rewrap": rewrap_keys,
    "status": key_status,
}
AUDIT_COMMANDS: dict[str, ClientCommand] = {"verify": verify_audit_chain, "list": list_events}
CLIENT_COMMANDS: dict[str, ClientCommand] = {
    "put": put,
    "get": get,
    "find": find,
    "delete-field": delete_field,
    "shred": shred,
    "hold": hold,
    "export": export,
    "consent": consent,
    "health": health,
    "keys": keys,
    "audit": audit,
}
