"""`make lint` validates the Dockerfile, docker-compose.yml and deploy/k8s (scripts/
validate_deploy.py). Each test breaks a copy of them in one way and checks that the validator
refuses it, naming the problem; the untouched copy passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def copy_of_the_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(ROOT / "deploy", root / "deploy")
    shutil.copy(ROOT / "docker-compose.yml", root / "docker-compose.yml")
    for main in ROOT.glob("services/*/*/__main__.py"):
        shutil.copytree(
            main.parent,
            root / main.parent.relative_to(ROOT),
            ignore=shutil.ignore_patterns("__pycache__", "migrations"),
        )
    return root


def validate(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "validate_deploy.py"), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_project_as_committed_is_valid(tmp_path: Path) -> None:
    # given an untouched copy
    root = copy_of_the_project(tmp_path)
    # when / then
    result = validate(root)
    assert result.returncode == 0, result.stderr


BREAKAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "a Deployment field misspelt": (
        lambda r: edit(r / "deploy/k8s/base/capture.yaml", "revisionHistoryLimit", "revisionLimit"),
        "Deployment/capture",
    ),
    "a readiness probe on the wrong path": (
        lambda r: edit(r / "deploy/k8s/base/checkout.yaml", "path: /readyz", "path: /ready"),
        "readinessProbe must GET /readyz",
    ),
    "a Secret that does not exist": (
        lambda r: edit(
            r / "deploy/k8s/base/webhooks.yaml", "name: marketpay-webhooks", "name: marketpay-web"
        ),
        "Secret marketpay-web does not exist",
    ),
    "a RabbitmqCluster with replicas as text": (
        lambda r: edit(r / "deploy/k8s/base/engines.yaml", "replicas: 3", "replicas: three"),
        "RabbitmqCluster/marketpay-rabbitmq",
    ),
    "a CloudNativePG field misspelt": (
        lambda r: edit(r / "deploy/k8s/base/engines.yaml", "instances: 2", "instance: 2"),
        "Cluster/marketpay-pg",
    ),
    "a rabbitmq scaler without its queue": (
        lambda r: edit(r / "deploy/k8s/base/capture.yaml", "queueName: capture.oms", "queue: x"),
        "ScaledObject/capture",
    ),
    "a scaler on a queue the service does not declare": (
        lambda r: edit(
            r / "deploy/k8s/base/capture.yaml", "queueName: capture.oms", "queueName: capture.omz"
        ),
        "queue capture.omz is not one capture declares",
    ),
    "an overlay patch that matches nothing": (
        lambda r: edit(
            r / "deploy/k8s/overlays/production/kustomization.yaml",
            "kind: Deployment, name: webhooks",
            "kind: Deployment, name: webhook",
        ),
        "matches nothing",
    ),
    "a compose service depending on one that does not exist": (
        lambda r: edit(
            r / "docker-compose.yml",
            "condition: service_completed_successfully",
            "condition: service_completed_successfully\n    migrations:\n"
            "      condition: service_started",
        ),
        "docker-compose.yml",
    ),
    "a service missing from compose": (
        lambda r: edit(r / "docker-compose.yml", "  exports:\n", "  exports_old:\n"),
        "exports",
    ),
    "a Dockerfile running as root": (
        lambda r: edit(r / "deploy/Dockerfile", "USER 10001:10001", "USER root"),
        "hadolint",
    ),
    "RabbitMQ definitions without the dead-letter exchange": (
        lambda r: edit(r / "deploy/rabbitmq/definitions.json", '"marketpay.dlx"', '"other.dlx"'),
        "exchange marketpay.dlx",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_copy_fails_lint(tmp_path: Path, breakage: str) -> None:
    # given a copy broken in one way
    root = copy_of_the_project(tmp_path)
    change, message = BREAKAGES[breakage]
    change(root)
    # when
    result = validate(root)
    # then
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
