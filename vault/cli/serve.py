"""``pii-vault serve``: the server's lifecycle, and the supervisor of ``--workers`` processes.

The server and everything it builds are imported inside ``run_serve``, so
that importing this module costs the caller commands nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vault.bootstrap.app import PolicyHolder

log = logging.getLogger("vault")

# The flags of ``serve`` that are settings (``vault.config.Settings`` field names).
SERVE_SETTINGS = (
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


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; exit 2 when a setting or the retention rules are wrong."""
    import grpc

    from vault import config
    from vault.audit.records import AuditAction
    from vault.bootstrap.app import build_app, init_data_dir, is_initialised
    from vault.bootstrap.maintenance import load_retention, start_maintenance
    from vault.bootstrap.metrics import Metrics, RpcMetrics, watch_app_state
    from vault.bootstrap.pki import TlsPaths
    from vault.bootstrap.seal import start_sealed_if_unusable
    from vault.transport.server import (
        SERVICE_NAMES,
        ServerOptions,
        TlsFiles,
        build_server,
        serve_until_signalled,
    )
    from vault.transport.servicer import ServingGate

    settings = config.from_env({name: getattr(args, name, None) for name in SERVE_SETTINGS})
    if settings.seal_check_interval <= 0:
        print("refusing to start: PII_VAULT_SEAL_CHECK_INTERVAL must be positive", file=sys.stderr)
        return 2
    if args.init and not is_initialised(settings.data_dir):
        for path in init_data_dir(settings.data_dir, settings.key_provider):
            log.info("created %s", path)
    if settings.workers > 1:
        return run_workers(settings.workers, settings.listen)
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
    # Leaving the block closes the app: buffered masked-read events land before exit.
    with build_app(settings, start_sealed=True) as app:
        watcher = start_sealed_if_unusable(app.keys, settings.seal_check_interval)
        watcher.watch_database(app.store.ping)
        gate = ServingGate(watcher.seal)
        interceptors: list[grpc.ServerInterceptor] = []
        if settings.tracing:
            from vault.bootstrap.tracing import install_tracing

            interceptors += install_tracing(app.store, app.keys)
        if settings.metrics_listen:
            metrics = Metrics()
            watch_app_state(metrics, app.audit, app.keys, lambda: gate.sealed)
            metrics.serve(settings.metrics_listen)
            interceptors.append(RpcMetrics(metrics))
            log.info("metrics on http://%s/metrics", settings.metrics_listen)
        server, port, health = build_server(
            app.vault,
            app.shredder,
            ServerOptions(
                listen=settings.listen,
                tls=tls,
                threads=settings.threads,
                max_message_bytes=settings.max_message_bytes,
                max_concurrent_rpcs=settings.max_concurrent_rpcs,
                reuse_port=settings.reuse_port,
                max_connection_age=settings.max_connection_age,
                max_connection_age_grace=settings.grace_seconds,
                keepalive=settings.keepalive,
            ),
            key_admin=app.key_admin,
            audit_reader=app.audit_reader,
            seal=gate,
            on_auth_failure=lambda method, reason: app.audit.record(
                "",
                AuditAction.AUTHENTICATE,
                outcome="denied",
                status_code="UNAUTHENTICATED",
                detail=f"{method}: {reason}",
            ),
            identity=lambda: app.policy().identity,
            interceptors=interceptors,
        )
        watcher.start_watching(health, ("", *SERVICE_NAMES))
        signal.signal(signal.SIGHUP, lambda *_: reload_policy(app.policy))
        host = settings.listen.rsplit(":", 1)[0]
        mode = "plaintext" if tls is None else "mTLS"
        log.info("pii-vault serving on %s:%d (%s)", host, port, mode)
        print(f"listening on {host}:{port}", flush=True)
        maintenance = start_maintenance(app, rules, settings.retention_interval)
        serve_until_signalled(
            server,
            health,
            settings.grace_seconds,
            drain_delay=settings.drain_delay,
            gate=gate,
        )
        watcher.stop(settings.grace_seconds)
        if maintenance is not None:
            maintenance.stop(settings.grace_seconds)
    return 0


def reload_policy(holder: PolicyHolder) -> None:
    """SIGHUP: read the policy file again; one that does not load leaves the old in force."""
    try:
        holder.reload()
    except Exception as error:  # OSError, or PolicyError naming the file and the bad place
        log.error("policy not reloaded, keeping the old one: %s", error)
        return
    log.info("policy reloaded from %s", holder.path)


def _fixed_port(listen: str) -> str:
    """``listen`` with port 0 replaced by a port free now: every worker must bind the same one."""
    host, _, port = listen.rpartition(":")
    if port != "0":
        return listen
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host.strip("[]"), 0))
        return f"{host}:{probe.getsockname()[1]}"


def run_workers(count: int, listen: str) -> int:
    """Run ``count`` single-worker processes sharing the port (SO_REUSEPORT).

    Each worker gets this command line less ``--workers`` and ``--init`` (the
    directory is initialised already), and ``PII_VAULT_WORKERS=1`` and
    ``PII_VAULT_REUSE_PORT=1``, which win over any inherited (deprecated)
    ``VAULT_`` names. Signals are forwarded; the exit status is the worst.
    """
    argv: list[str] = []
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers=") and arg != "--init":
            argv.append(arg)
    argv += ["--listen", _fixed_port(listen)]  # the last --listen wins
    env = dict(os.environ, PII_VAULT_REUSE_PORT="1", PII_VAULT_WORKERS="1")
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
