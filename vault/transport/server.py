"""The gRPC server: mutual TLS, health, reflection, limits, graceful stop.

A threaded ``grpc.server`` was measured against ``grpc.aio`` on this
workload (``benchmarks/test_bench_transport.py``) and serves the synchronous
storage and crypto code without an event-loop hop; see README.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from pii_vault_client.v1 import vault_pb2
from pii_vault_client.v1 import vault_pb2_grpc as pb_grpc

from vault.domain.audit_reader import AuditReader
from vault.domain.key_admin import KeyAdmin
from vault.domain.shredding import Shredder
from vault.domain.vault import Vault
from vault.policy.identity import IdentityRules
from vault.transport.servicer import (
    NEVER_SEALED,
    AuditServicer,
    AuthFailureHook,
    KeyAdminServicer,
    SealState,
    ServingGate,
    VaultServicer,
)

log = logging.getLogger("vault.server")

SERVICE_NAMES = (
    vault_pb2.DESCRIPTOR.services_by_name["VaultService"].full_name,
    vault_pb2.DESCRIPTOR.services_by_name["KeyAdminService"].full_name,
    vault_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
)
# The health name a liveness probe asks: SERVING while the process serves at all.
LIVENESS_SERVICE = "liveness"


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class ServerOptions:
    listen: str
    tls: TlsFiles | None
    threads: int = 16
    max_message_bytes: int = 256 * 1024
    max_value_bytes: int = 16 * 1024
    max_concurrent_rpcs: int = 256
    reuse_port: bool = False
    # HTTP/2 connections are closed (GOAWAY, then the grace for calls on them)
    # after this age, so clients reconnect and a load balancer spreads them
    # again over the replicas it has now; 0: never.
    max_connection_age: float = 300.0
    max_connection_age_grace: float = 30.0
    # Pings on idle connections find dead peers behind NAT and load balancers.
    keepalive: float = 60.0
    keepalive_timeout: float = 20.0


def _connection_options(options: ServerOptions) -> list[tuple[str, int]]:
    """gRPC core's channel arguments for the connection lifetimes ``options`` ask for."""

    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    found = [
        ("grpc.keepalive_time_ms", ms(options.keepalive)),
        ("grpc.keepalive_timeout_ms", ms(options.keepalive_timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        # Clients may ping as often as every 10 s without being told off (too_many_pings).
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]
    if options.max_connection_age > 0:
        found += [
            ("grpc.max_connection_age_ms", ms(options.max_connection_age)),
            ("grpc.max_connection_age_grace_ms", ms(options.max_connection_age_grace)),
        ]
    return found


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_server(
    vault: Vault,
    shredder: Shredder,
    options: ServerOptions,
    *,
    key_admin: KeyAdmin,
    audit_reader: AuditReader,
    seal: SealState = NEVER_SEALED,
    on_auth_failure: AuthFailureHook | None = None,
    identity: Callable[[], IdentityRules] | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Create and start the server; returns it, the bound port and the health servicer.

    ``identity`` gives the policy's rules for naming a caller from its client
    certificate, read per call so a policy reload applies at once (default:
    the certificate's one CN). A certificate naming no caller or several is
    refused UNAUTHENTICATED and handed to ``on_auth_failure`` to audit.

    While ``seal`` says sealed, every vault, key-admin and audit call answers
    UNAVAILABLE and health says NOT_SERVING (from the first moment, when the
    server starts sealed); health and reflection keep answering.
    """
    if options.tls is None and not is_loopback(options.listen):
        raise ValueError("a plain-text port is only allowed on a loopback address")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.threads, thread_name_prefix="rpc"),
        maximum_concurrent_rpcs=options.max_concurrent_rpcs,
        interceptors=list(interceptors),
        options=[
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", 16 * options.max_message_bytes),
            ("grpc.so_reuseport", 1 if options.reuse_port else 0),
            *_connection_options(options),
        ],
    )
    servicers = (
        VaultServicer(
            vault,
            shredder,
            max_value_bytes=options.max_value_bytes,
            trust_metadata=options.tls is None,
            seal=seal,
        ),
        KeyAdminServicer(key_admin, trust_metadata=options.tls is None, seal=seal),
        AuditServicer(audit_reader, trust_metadata=options.tls is None, seal=seal),
    )
    if on_auth_failure is not None:
        for servicer in servicers:
            servicer.on_auth_failure = on_auth_failure
    if identity is not None:
        for servicer in servicers:
            servicer.identity = identity
    pb_grpc.add_VaultServiceServicer_to_server(servicers[0], server)
    pb_grpc.add_KeyAdminServiceServicer_to_server(servicers[1], server)
    pb_grpc.add_AuditServiceServicer_to_server(servicers[2], server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    status = (
        health_pb2.HealthCheckResponse.NOT_SERVING
        if seal.sealed
        else health_pb2.HealthCheckResponse.SERVING
    )
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, status)
    # Liveness: the process serves. Readiness ("" and the service names) also
    # needs the key provider and the database (``vault.bootstrap.seal``).
    health_servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)
    if options.tls is None:
        port = server.add_insecure_port(options.listen)
    else:
        credentials = grpc.ssl_server_credentials(
            [(options.tls.server_key.read_bytes(), options.tls.server_cert.read_bytes())],
            root_certificates=options.tls.ca_cert.read_bytes(),
            require_client_auth=True,
        )
        port = server.add_secure_port(options.listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {options.listen}")
    server.start()
    return server, port, health_servicer


REFLECTION_V1_SERVICE = "grpc.reflection.v1.ServerReflection"


def enable_reflection(service_names: Sequence[str], server: grpc.Server) -> None:
    """Server reflection, v1 (what current grpcurl and ``buf curl`` ask first) and v1alpha.

    grpcio-reflection (up to 1.85) implements only ``grpc.reflection.v1alpha``. The
    v1 protocol is the same messages with the same field numbers under another
    package, so one servicer answers both: the v1 method is registered by name,
    with the v1alpha message classes doing the (identical) wire encoding.
    """
    names = (*service_names, REFLECTION_V1_SERVICE, reflection.SERVICE_NAME)
    servicer = reflection.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        REFLECTION_V1_SERVICE,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))


SIGNAL_POLL_SECONDS = 0.2
DRAIN_SETTLE_SECONDS = 0.2


def serve_until_signalled(
    server: grpc.Server,
    health_servicer: health.HealthServicer,
    grace_seconds: float,
    *,
    drain_delay: float = 0.0,
    gate: ServingGate | None = None,
) -> None:
    """Block until SIGTERM/SIGINT, then drain: the shutdown every load balancer expects.

    1. Health turns NOT_SERVING at once, for every service name.
    2. For ``drain_delay`` seconds the server goes on serving as before, so
       that load balancers and clients watching health move away first.
    3. ``gate`` starts refusing new calls UNAVAILABLE (retriable), not
       CANCELLED.
    4. The port closes; calls in flight get ``grace_seconds`` to finish.
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: draining for up to %.0fs", signum, grace_seconds)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Python runs signal handlers in the main thread, between bytecodes. The
    # kernel may deliver SIGTERM (or SIGHUP) to any thread -- gRPC's, the audit
    # flusher -- and then nothing wakes a main thread blocked in a plain
    # ``stop.wait()``: the handler would wait forever and the server ignore the
    # signal. Waking up a few times a second runs pending handlers promptly.
    while not stop.wait(SIGNAL_POLL_SECONDS):
        pass
    health_servicer.enter_graceful_shutdown()
    if drain_delay > 0:
        time.sleep(drain_delay)
    if gate is not None:
        gate.draining = True
        # Calls that were queued behind busy threads start now and are answered at once.
        time.sleep(DRAIN_SETTLE_SECONDS)
    server.stop(grace_seconds).wait()
