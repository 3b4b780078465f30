"""deploy/k8s: the manifests parse, and their names, labels, ports, paths, secrets and
settings agree with each other, with the Dockerfile and with the server's real routes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from loopwright.server.app import DEFAULT_SHUTDOWN_GRACE_S
from loopwright.server.auth import TokenMap, parse_token_list
from loopwright.settings import SETTINGS, read_config

from .conftest import DEPLOY
from .dockerfile import Dockerfile

K8S = DEPLOY / "k8s"
Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def kustomization() -> Manifest:
    data = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def manifests(kustomization: Manifest) -> dict[tuple[str, str], Manifest]:
    """Every object ``kubectl apply -k deploy/k8s`` creates, by (kind, name)."""
    found: dict[tuple[str, str], Manifest] = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / resource).read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{resource}: incomplete"
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} defined twice"
            found[key] = doc
    return found


@pytest.fixture(scope="module")
def secrets() -> dict[str, Manifest]:
    docs = yaml.safe_load_all((K8S / "secret.example.yaml").read_text())
    return {d["metadata"]["name"]: d for d in docs}


@pytest.fixture(scope="module")
def server(manifests: dict[tuple[str, str], Manifest]) -> Manifest:
    return manifests[("Deployment", "loopwright")]


def container(workload: Manifest) -> Manifest:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Manifest = containers[0]
    return result


def env_of(c: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


@pytest.fixture(scope="module")
def config(
    manifests: dict[tuple[str, str], Manifest], server: Manifest, tmp_path_factory: Any
) -> dict[str, str]:
    """The ConfigMap's loopwright.toml as the server reads it (the real settings reader)."""
    path = Path(env_of(container(server))["LOOPWRIGHT_CONFIG"])
    mount = next(m for m in container(server)["volumeMounts"] if m["mountPath"] == str(path.parent))
    volume = next(
        v for v in server["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    configmap = manifests[("ConfigMap", volume["configMap"]["name"])]
    file = tmp_path_factory.mktemp("config") / path.name
    file.write_text(configmap["data"][path.name])
    return read_config(file)


def test_kustomize_applies_every_manifest_but_the_secret_template(
    kustomization: Manifest,
) -> None:
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secret.example.yaml"}
    assert kustomization["namespace"] == "loopwright"


def test_two_server_replicas_behind_a_service(
    manifests: dict[tuple[str, str], Manifest], server: Manifest, dockerfile: Dockerfile
) -> None:
    spec = server["spec"]
    assert spec["replicas"] == 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    service = manifests[("Service", "loopwright")]
    assert service["spec"]["selector"].items() <= labels.items()
    # a running turn is in one replica's memory: a client keeps talking to that replica
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    ports = {p["name"]: p["containerPort"] for p in container(server)["ports"]}
    target = service["spec"]["ports"][0]["targetPort"]
    assert str(ports[target]) == dockerfile.final.last("EXPOSE").args.strip()
    # the container runs the image's command
    assert container(server)["args"] == dockerfile.final.last("CMD").exec_form()


def test_probes_call_routes_the_server_serves(
    server: Manifest, probe_status: Callable[[str], int]
) -> None:
    c = container(server)
    readiness, liveness = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
    assert (readiness["path"], liveness["path"]) == ("/readyz", "/healthz")
    named_ports = {p["name"] for p in c["ports"]}
    assert {readiness["port"], liveness["port"]} <= named_ports
    assert probe_status(readiness["path"]) == 200
    assert probe_status(liveness["path"]) == 200


def test_resources_are_requested_and_limited(manifests: dict[tuple[str, str], Manifest]) -> None:
    for kind, name in (("Deployment", "loopwright"), ("StatefulSet", "postgres")):
        resources = container(manifests[(kind, name)])["resources"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[part]), f"{name} {part}"


def test_the_server_runs_unprivileged_as_the_image_user(
    server: Manifest, dockerfile: Dockerfile
) -> None:
    pod = server["spec"]["template"]["spec"]
    useradd = next(c for c in dockerfile.final.commands() if c[0] == "useradd")
    uid = int(useradd[useradd.index("--uid") + 1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["fsGroup"] == uid  # the shared volume is writable
    security = container(server)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["readOnlyRootFilesystem"] is True
    assert "privileged" not in security
    # with a read-only root, everything written has a volume
    mounted = {m["mountPath"] for m in container(server)["volumeMounts"]}
    assert {"/tmp", "/data", "/workspaces", "/home/loopwright"} <= mounted


def test_the_bubblewrap_sandbox_gets_the_pod_settings_it_needs(
    server: Manifest, config: dict[str, str]
) -> None:
    assert config["LOOPWRIGHT_SANDBOX"] == "bubblewrap"
    security = container(server)["securityContext"]
    assert security["seccompProfile"]["type"] == "Unconfined"
    assert security["appArmorProfile"]["type"] == "Unconfined"
    assert security["procMount"] == "Unmasked"
    assert server["spec"]["template"]["spec"]["hostUsers"] is False


def test_the_config_map_is_a_valid_loopwright_toml_without_secrets(
    config: dict[str, str], server: Manifest
) -> None:
    assert set(config) <= {s.env for s in SETTINGS}
    assert "LOOPWRIGHT_TOKENS" not in config
    # the root filesystem is read-only: every directory the settings name is on a volume
    mounted = [Path(m["mountPath"]) for m in container(server)["volumeMounts"]]
    for name in ("LOOPWRIGHT_WORKSPACES", "LOOPWRIGHT_CACHE"):
        path = Path(config[name])
        assert any(path == m or m in path.parents for m in mounted), name


def test_sessions_go_to_the_postgres_service_and_workspaces_to_the_shared_volume(
    manifests: dict[tuple[str, str], Manifest], server: Manifest, config: dict[str, str]
) -> None:
    dsn = urlparse(config["LOOPWRIGHT_STORE"])
    service = manifests[("Service", dsn.hostname or "")]
    statefulset = manifests[("StatefulSet", "postgres")]
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= (
        statefulset["spec"]["template"]["metadata"]["labels"].items()
    )
    assert dsn.port == service["spec"]["ports"][0]["port"]
    db_env = env_of(container(statefulset))
    assert dsn.username == db_env["POSTGRES_USER"]
    assert dsn.path.lstrip("/") == db_env["POSTGRES_DB"]
    assert dsn.password is None
    # the password: one Secret key for the database and the server's PGPASSWORD
    assert env_of(container(server))["PGPASSWORD"] == db_env["POSTGRES_PASSWORD"]
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == [
        "ReadWriteOnce"
    ]

    mounts = {m["name"]: m["mountPath"] for m in container(server)["volumeMounts"]}
    volumes = {v["name"]: v for v in server["spec"]["template"]["spec"]["volumes"]}
    claim = next(
        volumes[name]["persistentVolumeClaim"]["claimName"]
        for name, path in mounts.items()
        if path == config["LOOPWRIGHT_WORKSPACES"]
    )
    pvc = manifests[("PersistentVolumeClaim", claim)]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # every replica mounts it


def test_every_secret_the_pods_read_is_in_the_template(
    manifests: dict[tuple[str, str], Manifest], secrets: dict[str, Manifest]
) -> None:
    for kind, name in (("Deployment", "loopwright"), ("StatefulSet", "postgres")):
        c = container(manifests[(kind, name)])
        for source in c.get("envFrom", []):
            assert source["secretRef"]["name"] in secrets
        for value in env_of(c).values():
            if isinstance(value, dict) and "secretKeyRef" in value:
                ref = value["secretKeyRef"]
                assert ref["key"] in secrets[ref["name"]]["stringData"]
    tokens = secrets["loopwright-secrets"]["stringData"]["LOOPWRIGHT_TOKENS"]
    assert TokenMap(parse_token_list(tokens)).enabled  # the template's format is the real one


def test_kubernetes_waits_longer_than_the_server_lets_turns_finish(server: Manifest) -> None:
    grace = server["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > DEFAULT_SHUTDOWN_GRACE_S
