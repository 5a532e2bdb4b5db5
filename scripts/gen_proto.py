"""Generate the vault.v1 Python code and typed stubs from ``proto/``.

This is the one codegen script. It writes ``vault_pb2.py``, ``vault_pb2.pyi``,
``vault_pb2_grpc.py``, ``vault_pb2_grpc.pyi`` and ``__init__.py`` of the package
``pii_vault_client.v1`` -- ``clients/python/src/pii_vault_client/v1/`` under
``--out`` (default: the repository root) -- and nothing else:
``google.type``/``google.rpc`` modules are never generated here, they come from
googleapis-common-protos at run time.

One copy of the stubs serves the client distribution (``pii-vault-client``) and
the server, which depends on it: two modules built from the same ``.proto`` in
one process would collide in protobuf's default descriptor pool. protoc names
Python modules after the proto's path (``vault.v1``), so the generated imports
of ``vault.v1`` modules, and the module name the builder gives the message
classes, are rewritten to ``pii_vault_client.v1``; the proto file and package
names inside the descriptors (``vault/v1/vault.proto``, ``vault.v1``) stay.

The output must be a pure function of the ``.proto`` files and the pinned tool
versions (grpcio-tools, protobuf, mypy-protobuf), because
``tests/test_generated_code.py`` regenerates into a temporary directory and
fails when the committed files differ.

Usage::

    python scripts/gen_proto.py [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
THIRD_PARTY_ROOT = REPO_ROOT / "third_party"
# Paths relative to PROTO_ROOT; only these files get Python code.
PROTO_FILES = ("vault/v1/vault.proto",)
# Where protoc puts the modules (the proto's path) and where they are moved to.
PROTOC_PACKAGE = Path("vault") / "v1"
GENERATED_PACKAGE = Path("clients") / "python" / "src" / "pii_vault_client" / "v1"
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


def _well_known_include() -> Path:
    """grpc_tools' bundled google/protobuf/*.proto (Timestamp and friends)."""
    return Path(str(resources.files("grpc_tools") / "_proto"))


def _relocate(text: str) -> str:
    """Point the generated code's own imports and module names at ``pii_vault_client.v1``."""
    text = _IMPORT_LINE.sub(rf"\1 {PYTHON_MODULE}", text)
    return _BUILDER_MODULE.sub(rf"\1{PYTHON_MODULE}.", text)


def generate(out_dir: Path) -> list[Path]:
    """Run protoc once with all four generators and return the files written."""
    package_dir = out_dir / GENERATED_PACKAGE
    package_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gen_proto-") as scratch:
        _protoc(Path(scratch))
        for generated in sorted((Path(scratch) / PROTOC_PACKAGE).glob("*.py*")):
            text = _relocate(generated.read_text(encoding="utf-8"))
            (package_dir / generated.name).write_text(text, encoding="utf-8")
    init_file = package_dir / "__init__.py"
    init_file.write_text(INIT_TEXT, encoding="utf-8")
    return sorted(package_dir.glob("*.py*"))


def _protoc(out_dir: Path) -> None:
    """protoc with the four generators, writing under ``out_dir/vault/v1``."""
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={THIRD_PARTY_ROOT}",
        f"--proto_path={_well_known_include()}",
        f"--plugin=protoc-gen-mypy={_find_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_find_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(PROTO_ROOT / name) for name in PROTO_FILES),
    ]
    result = subprocess.run(command, check=False)  # noqa: S603 - fixed argv, no shell
    if result.returncode != 0:
        raise SystemExit(f"protoc failed with exit code {result.returncode}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT,
        help=f"directory that receives {GENERATED_PACKAGE}/ (default: the repository root)",
    )
    args = parser.parse_args(argv)
    for path in generate(args.out.resolve()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
