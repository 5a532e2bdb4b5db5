"""Keep gRPC's C core from writing its own log lines under a caller command's one-line answer.

A caller command whose TLS handshake fails (a key that is not the
certificate's, a CA that did not sign the server's) gets UNAVAILABLE and says
so in one line; gRPC's core would also print a few lines of its own to stderr.
``GRPC_VERBOSITY`` is read once, when the core starts, so this module is
imported by ``vault.cli`` before anything imports ``grpc``. ``serve`` keeps
gRPC's logs, and a ``GRPC_VERBOSITY`` set by the user is kept.
"""

from __future__ import annotations

import os
import sys

CALLER_COMMANDS = frozenset(
    {"put", "get", "find", "delete-field", "shred", "hold", "export", "consent", "health", "keys",
     "audit"}
)  # fmt: skip


def _command(argv: list[str]) -> str:
    return next((arg for arg in argv if not arg.startswith("-")), "")


if _command(sys.argv[1:]) in CALLER_COMMANDS:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
