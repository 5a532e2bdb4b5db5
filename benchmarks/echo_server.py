"""A trivial unary echo service (bytes in, bytes out) for the transport benchmarks.

    python benchmarks/echo_server.py threaded|aio [--tls DIR]

Serves ``/bench.Echo/Echo`` on 127.0.0.1, on a port the kernel picks, and
prints ``listening on 127.0.0.1:PORT`` once it accepts calls. ``--tls DIR``
serves mutual TLS with the dev PKI under ``DIR`` (the layout ``pii-vault
init`` makes: ``ca.crt``, ``server.{crt,key}``). SIGTERM stops it.

The threaded server is built like the vault's (``grpc.server`` over a
16-thread pool); the aio server is ``grpc.aio.server()`` with its defaults.
Each runs in its own process, so that its CPU time can be read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Echo"
THREADS = 16


def _credentials(tls_dir: Path) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [((tls_dir / "server.key").read_bytes(), (tls_dir / "server.crt").read_bytes())],
        root_certificates=(tls_dir / "ca.crt").read_bytes(),
        require_client_auth=True,
    )


def _bind(server: grpc.Server | grpc.aio.Server, tls_dir: Path | None) -> int:
    if tls_dir is None:
        return server.add_insecure_port("127.0.0.1:0")
    return server.add_secure_port("127.0.0.1:0", _credentials(tls_dir))


def _echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
    return request


async def _echo_async(request: bytes, _context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
    return request


def serve_threaded(tls_dir: Path | None) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=THREADS))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
            ),
        )
    )
    port = _bind(server, tls_dir)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop.wait()
    server.stop(0).wait()


async def _serve_aio(tls_dir: Path | None) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo_async)}
            ),
        )
    )
    port = _bind(server, tls_dir)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("threaded", "aio"))
    parser.add_argument("--tls", type=Path, default=None, help="directory of the dev PKI")
    args = parser.parse_args()
    if args.kind == "threaded":
        serve_threaded(args.tls)
    else:
        asyncio.run(_serve_aio(args.tls))


if __name__ == "__main__":
    main()
