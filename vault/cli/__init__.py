"""``pii-vault``: run the vault, and call it as one of the callers.

One table maps each command to the function that runs it: the caller
commands (``client_commands``, talking to a running server), the operator's
local commands (``operator_commands``) and ``serve`` (``serve``). Only the
caller commands' imports are loaded up front; the others import the server
layers inside the function, so that a caller command starts fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from vault.cli import _grpc_quiet, key_commands, operator_commands  # _grpc_quiet: before grpc
from vault.cli.client_commands import CLIENT_COMMANDS, run_client
from vault.cli.parser import build_parser
from vault.cli.serve import reload_policy as _reload_policy
from vault.cli.serve import run_serve
from vault.environment import DEFAULT_LOG_LEVEL, SettingsError, read_variable

__all__ = ["COMMANDS", "_grpc_quiet", "_reload_policy", "build_parser", "main"]

Command = Callable[[argparse.Namespace], int]

COMMANDS: dict[str, Command] = {
    "init": operator_commands.run_init,
    "serve": run_serve,
    "canary": operator_commands.run_canary,
    "receipts": operator_commands.run_receipts,
    "policy": operator_commands.run_policy,
    "retention": operator_commands.run_retention,
    "migrate": operator_commands.run_migrate,
    **dict.fromkeys(CLIENT_COMMANDS, run_client),
    "keys": lambda args: (
        key_commands.run_migrate(args) if args.keys_command == "migrate" else run_client(args)
    ),
}

# Commands that write keyring, keys and database files: for this user's eyes only.
PRIVATE_FILE_COMMANDS = frozenset({"init", "serve", "retention", "migrate"})


def _log_handler(log_format: str) -> logging.Handler:
    """Process logs on stderr: plain text, or one JSON object a line (``PII_VAULT_LOG_FORMAT``).

    JSON lines carry ``time``, ``level``, ``logger``, ``message`` and the
    ``request_id`` of the call being served (``vault.transport.request_ids``).
    The audit trail is a stream of its own (``PII_VAULT_AUDIT_JSONL``), never
    mixed into these.
    """
    handler = logging.StreamHandler(sys.stderr)
    if log_format.strip().lower() == "json":
        from pythonjsonlogger.json import JsonFormatter

        from vault.transport.request_ids import RequestIdFilter

        handler.addFilter(RequestIdFilter())
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(trace_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    root = logging.getLogger()
    if not root.handlers:  # as basicConfig: a host that set up logging keeps its own
        # The handler first, so that a deprecated variable's warning is logged like the rest.
        root.addHandler(_log_handler(read_variable("LOG_FORMAT") or "text"))
        root.setLevel(read_variable("LOG_LEVEL") or DEFAULT_LOG_LEVEL)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    if args.command in PRIVATE_FILE_COMMANDS:
        os.umask(0o077)
    try:
        return COMMANDS[args.command](args)
    except SettingsError as error:
        print(f"invalid setting: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # One line, never a traceback or a message (it could quote a value or a
        # database URL with its password); DEBUG logging shows the whole story.
        if args.command == "serve" or root.isEnabledFor(logging.DEBUG):
            raise
        print(
            f"pii-vault {args.command}: failed ({type(error).__name__}); rerun with"
            " PII_VAULT_LOG_LEVEL=DEBUG for the details",
            file=sys.stderr,
        )
        return 1
