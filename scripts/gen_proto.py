"""Generate everything derived from ``proto/``: Python, TypeScript, and the API reference.

This is the one codegen script. It runs ``buf generate`` with ``buf.gen.yaml``
(every plugin local and pinned: no Buf registry) into a scratch directory and
places the output under ``--out`` (default: the repository root):

- Python: ``vault_pb2.py``, ``vault_pb2.pyi``, ``vault_pb2_grpc.py``,
  ``vault_pb2_grpc.pyi`` and ``__init__.py`` of the package
  ``pii_vault_client.v1`` (``clients/python/src/pii_vault_client/v1/``).
  ``google.type``/``google.rpc`` modules are never generated for Python: they
  come from googleapis-common-protos at run time.
- TypeScript: ``clients/node/src/gen/`` (protobuf-es), replaced whole, with the
  ``google.rpc``/``google.type`` files the client needs (no npm package has them).
- ``docs/api.md``: the API reference rendered from the proto's comments
  (``scripts/protoc_gen_api_doc.py``).

One copy of the Python stubs serves the client distribution
(``pii-vault-client``) and the server, which depends on it: two modules built
from the same ``.proto`` in one process would collide in protobuf's default
descriptor pool. protoc names Python modules after the proto's path
(``vault.v1``), so the generated imports of ``vault.v1`` modules, and the
module name the builder gives the message classes, are rewritten to
``pii_vault_client.v1``; the proto file and package names inside the
descriptors (``vault/v1/vault.proto``, ``vault.v1``) stay.

Tools: ``buf`` and ``protoc-gen-es`` from ``clients/node/node_modules`` (exact
versions in ``clients/node/package-lock.json``; ``npm ci`` runs here when that
install is missing or older than the lockfile); ``protoc`` is grpcio-tools'
(the ``grpc_tools.protoc`` module), ``protoc-gen-mypy``/``protoc-gen-mypy_grpc``
come from the venv (pinned in ``pyproject.toml``). buf finds them on ``PATH``:
a scratch ``bin/`` holds ``python`` (this interpreter) and the plugins.

The output must be a pure function of the ``.proto`` files and those pinned
tool versions, because ``tests/test_generated_code.py`` regenerates into a
temporary directory and fails when the committed files differ.

Usage::

    python scripts/gen_proto.py [--out DIR]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "buf.gen.yaml"
NODE_DIR = REPO_ROOT / "clients" / "node"
NODE_BIN = NODE_DIR / "node_modules" / ".bin"
NODE_LOCKFILE = NODE_DIR / "package-lock.json"
# npm ci writes this copy of the lockfile: the install is current when it is not older.
NODE_INSTALLED_LOCK = NODE_DIR / "node_modules" / ".package-lock.json"
# Where buf.gen.yaml's plugins write (under the scratch --output directory).
BUF_PYTHON = Path("python") / "vault" / "v1"
BUF_TYPESCRIPT = Path("typescript")
BUF_DOC = Path("docs") / "api.md"
# Where the files go, relative to --out.
GENERATED_PACKAGE = Path("clients") / "python" / "src" / "pii_vault_client" / "v1"
TYPESCRIPT_DIR = Path("clients") / "node" / "src" / "gen"
API_DOC = Path("docs") / "api.md"
PROTO_MODULE = "vault.v1"
PYTHON_MODULE = "pii_vault_client.v1"
INIT_TEXT = '"""Generated from proto/vault/v1 by scripts/gen_proto.py. Do not edit."""\n'
# `from vault.v1 import x` / `import vault.v1.x`, and the builder's module name
# ('vault.v1.vault_pb2'). Serialized descriptors are bytes literals and never match.
_IMPORT_LINE = re.compile(rf"^(from|import) {re.escape(PROTO_MODULE)}\b", re.MULTILINE)
_BUILDER_MODULE = re.compile(
    rf"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, '){re.escape(PROTO_MODULE)}\."
)


def _find_plugin(name: str) -> Path:
    """Locate a protoc plugin installed next to the running interpreter, else on PATH.

    The venv's ``bin/`` is preferred so the plugin matches the interpreter (and
    hence the pinned mypy-protobuf) even when the venv is not activated.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found is None:
        raise SystemExit(
            f"{name} not found next to {sys.executable} or on PATH; "
            "install mypy-protobuf (pip install -e '.[dev]')"
        )
    return Path(found)


def install_node_tools() -> None:
    """``npm ci`` in clients/node unless its install matches the lockfile; once across processes."""

    def current() -> bool:
        return (
            NODE_INSTALLED_LOCK.is_file()
            and NODE_INSTALLED_LOCK.stat().st_mtime >= NODE_LOCKFILE.stat().st_mtime
            and (NODE_BIN / "buf").exists()
        )

    if current():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: buf and protoc-gen-es come from clients/node (Node 20+)")
    # Parallel test workers may all get here: one installs, the others wait for it.
    with (NODE_DIR / ".npm-ci.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not current():
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise SystemExit(f"npm ci in {NODE_DIR} failed:\n{result.stdout}\n{result.stderr}")


def _tool_dir(scratch: Path) -> Path:
    """A ``bin/`` for buf's PATH: ``python`` runs this interpreter; the plugins by name."""
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n', encoding="utf-8")
    python.chmod(0o755)
    for name in ("protoc-gen-mypy", "protoc-gen-mypy_grpc"):
        (bin_dir / name).symlink_to(_find_plugin(name))
    (bin_dir / "protoc-gen-es").symlink_to(NODE_BIN / "protoc-gen-es")
    return bin_dir


def _buf_generate(scratch: Path) -> Path:
    """``buf generate`` with buf.gen.yaml into ``scratch/out``; returns that directory."""
    out = scratch / "out"
    env = {**os.environ, "PATH": f"{_tool_dir(scratch)}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(NODE_BIN / "buf"), "generate", "--template", str(TEMPLATE), "--output", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"buf generate failed:\n{result.stdout}\n{result.stderr}")
    return out


def _relocate(text: str) -> str:
    """Point the generated code's own imports and module names at ``pii_vault_client.v1``."""
    text = _IMPORT_LINE.sub(rf"\1 {PYTHON_MODULE}", text)
    return _BUILDER_MODULE.sub(rf"\1{PYTHON_MODULE}.", text)


def generate(out_dir: Path) -> list[Path]:
    """Generate everything into ``out_dir`` and return the files written."""
    install_node_tools()
    package_dir = out_dir / GENERATED_PACKAGE
    package_dir.mkdir(parents=True, exist_ok=True)
    typescript_dir = out_dir / TYPESCRIPT_DIR
    api_doc = out_dir / API_DOC
    with tempfile.TemporaryDirectory(prefix="gen_proto-") as scratch:
        generated = _buf_generate(Path(scratch))
        for module in sorted((generated / BUF_PYTHON).glob("*.py*")):
            text = _relocate(module.read_text(encoding="utf-8"))
            (package_dir / module.name).write_text(text, encoding="utf-8")
        shutil.rmtree(typescript_dir, ignore_errors=True)
        shutil.copytree(generated / BUF_TYPESCRIPT, typescript_dir)
        api_doc.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(generated / BUF_DOC, api_doc)
    (package_dir / "__init__.py").write_text(INIT_TEXT, encoding="utf-8")
    return [
        *sorted(package_dir.glob("*.py*")),
        *sorted(p for p in typescript_dir.rglob("*") if p.is_file()),
        api_doc,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT,
        help="directory that receives the generated files (default: the repository root)",
    )
    args = parser.parse_args(argv)
    for path in generate(args.out.resolve()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
