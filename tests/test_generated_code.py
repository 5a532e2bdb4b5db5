"""The generated vault.v1 code and API reference are fresh, complete and match the contract.

CI fails here when someone edits ``proto/`` without regenerating, when a
committed generated file -- the Python ``pii_vault_client/v1`` modules (in the
client distribution, ``clients/python``), the TypeScript ``clients/node/src/gen``
tree, or ``docs/api.md`` -- was edited by hand, or when the proto stops passing
``buf lint`` (STANDARD). ``scripts/gen_proto.py`` produces all three through
``buf generate`` (``buf.gen.yaml``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
GEN_SCRIPT = REPO_ROOT / "scripts" / "gen_proto.py"
GENERATED_PACKAGE = Path("clients") / "python" / "src" / "pii_vault_client" / "v1"
COMMITTED_DIR = REPO_ROOT / GENERATED_PACKAGE
GENERATED_FILES = (
    "__init__.py",
    "vault_pb2.py",
    "vault_pb2.pyi",
    "vault_pb2_grpc.py",
    "vault_pb2_grpc.pyi",
)
TYPESCRIPT_DIR = Path("clients") / "node" / "src" / "gen"
TYPESCRIPT_FILES = {
    "vault/v1/vault_pb.ts",
    "google/rpc/status_pb.ts",
    "google/rpc/error_details_pb.ts",
    "google/type/date_pb.ts",
    "google/type/postal_address_pb.ts",
}
API_DOC = Path("docs") / "api.md"
# buf comes from clients/node's lockfile (exact version), so results do not drift.
BUF = REPO_ROOT / "clients" / "node" / "node_modules" / ".bin" / "buf"
REGENERATE_HINT = "generated code is stale: run python scripts/gen_proto.py"

EXPECTED_SERVICES: dict[str, set[str]] = {
    "VaultService": {
        "PutField",
        "GetField",
        "BatchGetFields",
        "ListFields",
        "Detokenize",
        "FindSubjects",
        "DeleteField",
        "ShredSubject",
        "ExportSubject",
        "SetLegalHold",
        "SetConsent",
    },
    "KeyAdminService": {"RotateMasterKey", "RewrapKeys", "GetKeyStatus"},
    "AuditService": {"ListEvents", "VerifyChain"},
}


def _files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generation into a temporary directory, by the one codegen script."""
    if shutil.which("npm") is None:
        reason = "gen_proto.py needs Node.js: buf and protoc-gen-es come from clients/node"
        if os.environ.get("VAULT_REQUIRE_NODE") == "1":
            pytest.fail(f"{reason}, and VAULT_REQUIRE_NODE=1 says it must run")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("generated")
    result = subprocess.run(
        [sys.executable, str(GEN_SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, f"gen_proto.py failed:\n{result.stdout}\n{result.stderr}"
    return out


def _tree(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def test_committed_python_code_matches_a_fresh_generation(fresh: Path) -> None:
    fresh_dir = fresh / GENERATED_PACKAGE
    assert _files_in(fresh_dir) == set(GENERATED_FILES)
    missing = [name for name in GENERATED_FILES if not (COMMITTED_DIR / name).is_file()]
    assert not missing, f"{GENERATED_PACKAGE} lacks {missing}; {REGENERATE_HINT}"
    stale = [
        name
        for name in GENERATED_FILES
        if (fresh_dir / name).read_bytes() != (COMMITTED_DIR / name).read_bytes()
    ]
    assert not stale, f"{GENERATED_PACKAGE}/{{{', '.join(stale)}}} differ; {REGENERATE_HINT}"


def test_committed_typescript_code_matches_a_fresh_generation(fresh: Path) -> None:
    fresh_dir, committed_dir = fresh / TYPESCRIPT_DIR, REPO_ROOT / TYPESCRIPT_DIR
    assert _tree(fresh_dir) == TYPESCRIPT_FILES
    assert _tree(committed_dir) == TYPESCRIPT_FILES, f"{TYPESCRIPT_DIR}: {REGENERATE_HINT}"
    stale = sorted(
        name
        for name in TYPESCRIPT_FILES
        if (fresh_dir / name).read_bytes() != (committed_dir / name).read_bytes()
    )
    assert not stale, f"{TYPESCRIPT_DIR}/{{{', '.join(stale)}}} differ; {REGENERATE_HINT}"


def test_committed_api_reference_matches_a_fresh_generation(fresh: Path) -> None:
    committed = REPO_ROOT / API_DOC
    assert committed.is_file(), f"{API_DOC} is missing; {REGENERATE_HINT}"
    assert (fresh / API_DOC).read_bytes() == committed.read_bytes(), (
        f"{API_DOC} differs; {REGENERATE_HINT}"
    )
    text = committed.read_text(encoding="utf-8")
    for service, rpcs in EXPECTED_SERVICES.items():
        assert f"### {service}" in text
        for rpc in rpcs:
            assert f"| `{rpc}` |" in text, rpc


def test_generated_modules_expose_the_contract_services(monkeypatch: pytest.MonkeyPatch) -> None:
    # Import the committed modules of this work tree, installed or not.
    monkeypatch.syspath_prepend(str(REPO_ROOT / "clients" / "python" / "src"))
    from pii_vault_client.v1 import vault_pb2, vault_pb2_grpc

    services = vault_pb2.DESCRIPTOR.services_by_name
    assert set(services) == set(EXPECTED_SERVICES)
    for service_name, rpc_names in EXPECTED_SERVICES.items():
        service = services[service_name]
        assert service.full_name == f"vault.v1.{service_name}"
        assert set(service.methods_by_name) == rpc_names, service_name
        for rpc_name, method in service.methods_by_name.items():
            assert method.input_type.name == f"{rpc_name}Request"
            assert method.output_type.name == f"{rpc_name}Response"
        for suffix in ("Stub", "Servicer"):
            assert hasattr(vault_pb2_grpc, f"{service_name}{suffix}")
        assert hasattr(vault_pb2_grpc, f"add_{service_name}Servicer_to_server")

    rewrap = services["KeyAdminService"].methods_by_name["RewrapKeys"]
    assert rewrap.server_streaming and not rewrap.client_streaming
    streaming = [
        method.full_name
        for service in services.values()
        for method in service.methods
        if method.server_streaming or method.client_streaming
    ]
    assert streaming == ["vault.v1.KeyAdminService.RewrapKeys"]


def test_proto_passes_buf_lint(fresh: Path) -> None:
    # ``fresh`` ran gen_proto.py, which installs clients/node (and so buf) if needed.
    result = subprocess.run(
        [str(BUF), "lint"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}\n{result.stderr}"
