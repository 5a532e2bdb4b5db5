"""The deployment files are valid and say what the service needs (issue 11, item 9).

- ``deploy/compose.yaml`` against the Compose specification schema bundled with
  check-jsonschema (``--builtin-schema vendor.compose-spec``);
- every document under ``deploy/k8s/`` against the Kubernetes schemas bundled with
  kubernetes-validate, strict (unknown fields refused), for a fixed Kubernetes version;
- ``requirements.lock`` pins every runtime dependency of ``pyproject.toml`` at the same
  version, with hashes, and the Dockerfile installs from it with ``--require-hashes``.

No network: both validators use their bundled schemas, and the check-jsonschema run has its
proxies pointed at a closed port, so a schema download would fail the test, not pass slowly.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
NO_NETWORK = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
}


def check_compose(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **NO_NETWORK},
        check=False,
    )


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


# -- Compose -----------------------------------------------------------------------------------
def test_compose_file_is_valid_against_the_compose_spec(tmp_path: Path) -> None:
    result = check_compose(COMPOSE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_refuses_a_wrong_file(tmp_path: Path) -> None:
    """The check has teeth: an unknown service key fails it."""
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  vault:\n    image: x\n    restart_policy: always\n")
    result = check_compose(broken, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr


def test_compose_runs_two_replicas_that_drain_before_they_are_killed() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    replicas = [
        name
        for name, s in services.items()
        if s.get("command") is None and "PII_VAULT_DRAIN_DELAY" in s.get("environment", {})
    ]
    assert sorted(replicas) == ["vault-1", "vault-2"]
    for name in replicas:
        env = services[name]["environment"]
        drain = float(env["PII_VAULT_DRAIN_DELAY"])
        grace = float(env["PII_VAULT_GRACE_SECONDS"])
        assert float(services[name]["stop_grace_period"].rstrip("s")) > drain + grace
        assert env["PII_VAULT_METRICS_LISTEN"].endswith(":9464")
        assert "healthcheck" in services[name]
        assert "@postgres-data:" in env["PII_VAULT_DATABASE_URL"]
        assert "@postgres-keys:" in env["PII_VAULT_KEY_DATABASE_URL"]
    init = services["vault-init"]["command"][0]
    assert (
        "transit+http://openbao:8200/transit/pii-vault?token-file=/run/secrets/bao-token"
        in (services["vault-init"]["environment"]["TRANSIT_KEY_URI"])
    )
    assert "pii-vault init" in init
    assert "tls" not in init.split("cp ", 1)[1].split(";", 1)[0], "the dev CA must stay in tmpfs"


# -- Kubernetes --------------------------------------------------------------------------------
def test_the_kubernetes_version_is_one_the_validator_ships() -> None:
    shipped = kubernetes_validate.utils.all_versions()
    assert any(v.startswith("1.30") for v in shipped), shipped


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_kubernetes_manifest_is_valid(path: Path) -> None:
    documents = load_all(path)
    assert documents
    for document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name}: {document['kind']}/{document['metadata']['name']}: {error}")


def test_the_kubernetes_validator_refuses_an_unknown_field() -> None:
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x"},
                "data": {},
                "dta": {},
            },
            KUBERNETES_VERSION,
            strict=True,
        )


def k8s_objects() -> dict[str, dict]:
    return {
        doc["kind"] + "/" + doc["metadata"]["name"]: doc for p in K8S_FILES for doc in load_all(p)
    }


def test_deployment_probes_and_grace_fit_the_drain() -> None:
    objects = k8s_objects()
    pod = objects["Deployment/pii-vault"]["spec"]["template"]["spec"]
    assert objects["Deployment/pii-vault"]["spec"]["replicas"] >= 2
    (server,) = pod["containers"]
    env = {e["name"]: e["value"] for e in server["env"]}
    drain = float(env["PII_VAULT_DRAIN_DELAY"])
    grace = float(env["PII_VAULT_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > drain + grace
    assert "preStop" not in server.get("lifecycle", {})
    for probe in ("readinessProbe", "livenessProbe"):
        command = server[probe]["exec"]["command"]
        assert command[:2] == ["pii-vault", "health"]
        assert "admin" not in command
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {
        "Service/pii-vault",
        "PodDisruptionBudget/pii-vault",
        "ConfigMap/pii-vault-config",
        "Secret/pii-vault-server-tls",
        "Secret/pii-vault-bao-token",
        "NetworkPolicy/pii-vault-server",
    } <= set(objects)


def test_configmap_policy_and_retention_load_in_the_vault(tmp_path: Path) -> None:
    from vault.domain.retention_rules import RetentionRules
    from vault.policy import Policy

    data = k8s_objects()["ConfigMap/pii-vault-config"]["data"]
    (tmp_path / "policy.toml").write_text(data["policy.toml"])
    (tmp_path / "retention.toml").write_text(data["retention.toml"])
    Policy.load(tmp_path / "policy.toml")
    assert not RetentionRules.load(tmp_path / "retention.toml").empty


# -- the image and its lock file ---------------------------------------------------------------
def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) from requirements.lock."""
    pins: dict[str, tuple[str, int]] = {}
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", block)
        if match:
            pins[canonical(match[1])] = (match[2], block.count("--hash=sha256:"))
    return pins


# Built from this repository (clients/python) into the image beside the server's own wheel;
# the only runtime dependency given as a range, and the one absent from requirements.lock.
LOCAL_DISTRIBUTION = "pii-vault-client"


def test_lock_file_pins_every_runtime_dependency_at_pyprojects_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = lock_pins()
    assert pins
    assert LOCAL_DISTRIBUTION not in pins
    local = [r for r in project["dependencies"] if canonical(r).startswith(LOCAL_DISTRIBUTION)]
    assert len(local) == 1 and re.fullmatch(r"pii-vault-client>=[\d.]+,<[\d.]+", local[0])
    for requirement in project["dependencies"]:
        if requirement in local:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", requirement)
        assert match, f"pyproject pins exactly: {requirement}"
        name, version = canonical(match[1]), match[2]
        assert name in pins, f"{name} missing from requirements.lock"
        assert pins[name][0] == version, f"{name}: pyproject {version}, lock {pins[name][0]}"
    assert all(hashes > 0 for _, hashes in pins.values()), "every pin carries hashes"


def test_dockerfile_is_pinned_hash_checked_non_root_and_makes_no_keys() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", code, re.M)
    assert all(
        line.split()[1] in ("${PYTHON_IMAGE}",)
        for line in code.splitlines()
        if line.startswith("FROM ")
    )
    assert "--require-hashes -r /tmp/requirements.lock" in code
    assert "--no-deps /wheels/" in code
    assert "COPY clients/python ./clients/python" in code
    assert "--wheel-dir /wheels ./clients/python ." in code
    assert re.search(r"^USER 10001", code, re.M)
    assert "--init" not in code and " init" not in code
    assert "ca.key" not in code


# -- OPERATIONS.md alerts ----------------------------------------------------------------------
def test_operations_alerts_name_only_metrics_and_labels_the_vault_exports() -> None:
    """The rules in OPERATIONS.md use real metric names, audit actions/outcomes and codes."""
    import grpc

    from vault.audit.records import AuditAction, AuditOutcome

    text = (ROOT / "OPERATIONS.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block, "OPERATIONS.md has the alert rules as a yaml block"
    rules = yaml.safe_load(block[1])["groups"][0]["rules"]
    assert len(rules) >= 10
    exported = (ROOT / "vault" / "bootstrap" / "metrics.py").read_text(encoding="utf-8")
    labels = {
        "action": {a.value for a in AuditAction},
        "outcome": {o.value for o in AuditOutcome},
        "code": {c.name for c in grpc.StatusCode},
    }
    # MeteredProvider counts each wrap and unwrap as "ok" or "error".
    provider_labels = {"outcome": {"ok", "error"}}
    assert 'outcome = "error"' in exported and 'outcome = "ok"' in exported
    for rule in rules:
        expr = rule["expr"]
        for name in re.findall(r"\b(vault_[a-z_]+)", expr):
            base = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert f'"{base}"' in exported, f"{rule['alert']}: no metric {base}"
        for metric, selector in re.findall(r"\b(vault_[a-z_]+)\{([^}]*)\}", expr):
            known = provider_labels if metric.startswith("vault_key_provider") else labels
            for label, value in re.findall(r'\b(action|outcome|code)="([^"]*)"', selector):
                assert value in known[label], f"{rule['alert']}: {label}={value!r} never occurs"
