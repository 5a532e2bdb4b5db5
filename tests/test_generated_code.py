"""The generated vault.v1 code is fresh, complete and matches the contract.

CI fails here when someone edits ``proto/`` without regenerating, when the
committed ``pii_vault_client/v1`` files (in the client distribution,
``clients/python``) were edited by hand, or when the proto stops passing
``buf lint`` (STANDARD).
"""

from __future__ import annotations

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
# Pinned so lint results do not drift with new buf releases.
BUF_PACKAGE = "@bufbuild/buf@1.75.0"
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


def test_committed_generated_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(GEN_SCRIPT), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"gen_proto.py failed:\n{result.stdout}\n{result.stderr}"

    fresh_dir = tmp_path / GENERATED_PACKAGE
    assert _files_in(fresh_dir) == set(GENERATED_FILES)
    missing = [name for name in GENERATED_FILES if not (COMMITTED_DIR / name).is_file()]
    assert not missing, f"{GENERATED_PACKAGE} lacks {missing}; {REGENERATE_HINT}"
    stale = [
        name
        for name in GENERATED_FILES
        if (fresh_dir / name).read_bytes() != (COMMITTED_DIR / name).read_bytes()
    ]
    assert not stale, f"{GENERATED_PACKAGE}/{{{', '.join(stale)}}} differ; {REGENERATE_HINT}"


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


def test_proto_passes_buf_lint() -> None:
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx (Node.js) is not installed, so buf cannot run here")
    result = subprocess.run(
        [npx, "--yes", BUF_PACKAGE, "lint"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}\n{result.stderr}"
