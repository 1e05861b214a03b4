"""`make up` on a fresh machine (scripts/ensure-servers.sh): which way it gets PostgreSQL and
RabbitMQ. The machine is faked: nothing answers on the configured ports (closed ones), and PATH
holds only the commands of the case (stubs for docker, apt-get, id, the local servers). The
script runs in dry-run mode, so nothing is installed or started; it prints the path it took and
the commands it would run."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASICS = ("dirname", "seq", "sleep", "ls", "head", "cat", "env")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stub(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + script + "\n")
    path.chmod(0o755)


def machine(
    tmp_path: Path,
    *,
    docker_engine: bool | None = None,
    uid: int = 1000,
    distribution: str = "debian",
    apt: bool = True,
    local_servers: bool = False,
) -> dict[str, str]:
    """The environment of a fake machine on which nothing answers."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in BASICS:
        real = shutil.which(name)
        assert real, name
        (bin_dir / name).symlink_to(real)
    stub(bin_dir, "id", f'[ "$1" = -u ] && echo {uid}')
    if docker_engine is not None:  # the client is there; does an engine answer?
        engine = "exit 0" if docker_engine else "echo 'Cannot connect' >&2; exit 1"
        stub(bin_dir, "docker", f'case "$1" in info) {engine};; *) exit 0;; esac')
    if apt:
        stub(bin_dir, "apt-get", "echo 'apt-get must not run in a dry run' >&2; exit 9")
    if local_servers:
        stub(bin_dir, "pg_ctlcluster", "exit 9")
        stub(bin_dir, "rabbitmq-server", "exit 9")
    os_release = tmp_path / "os-release"
    os_release.write_text(f'ID={distribution}\nPRETTY_NAME="{distribution}"\n')
    return {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "MARKETPAY_PG_PORT": str(closed_port()),
        "MARKETPAY_AMQP_PORT": str(closed_port()),
        "MARKETPAY_OS_RELEASE": str(os_release),
        "MARKETPAY_SERVERS_DRY_RUN": "1",
    }


def ensure_servers(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "ensure-servers.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_servers_that_answer_are_used(tmp_path: Path) -> None:
    # given the PostgreSQL and RabbitMQ of this machine (they answer), and no docker at all
    env = machine(tmp_path)
    env["MARKETPAY_PG_PORT"] = os.environ.get("MARKETPAY_PG_PORT", "5432")
    env["MARKETPAY_AMQP_PORT"] = os.environ.get("MARKETPAY_AMQP_PORT", "5672")
    # when
    result = ensure_servers(env)
    # then
    assert result.returncode == 0, result.stderr
    assert "servers: using PostgreSQL on 127.0.0.1:" in result.stdout
    assert "would run" not in result.stdout


def test_installed_but_stopped_servers_are_started(tmp_path: Path) -> None:
    # given nothing answers, but both are installed here
    env = machine(tmp_path, local_servers=True, docker_engine=True)
    # when
    result = ensure_servers(env)
    # then
    assert result.returncode == 0, result.stderr
    assert "servers: starting the PostgreSQL and RabbitMQ installed on this machine" in (
        result.stdout
    )
    assert "would run: pg_ctlcluster" in result.stdout
    assert "would run: rabbitmq-server -detached" in result.stdout


def test_a_docker_engine_starts_them_from_compose(tmp_path: Path) -> None:
    # given nothing answers, nothing is installed, and a Docker engine answers
    env = machine(tmp_path, docker_engine=True, uid=0)
    # when
    result = ensure_servers(env)
    # then
    assert result.returncode == 0, result.stderr
    assert "servers: starting PostgreSQL and RabbitMQ with Docker" in result.stdout
    assert "would run: docker compose up -d postgres rabbitmq" in result.stdout
    assert "apt-get" not in result.stdout


@pytest.mark.parametrize("docker_engine", [None, False], ids=["no docker", "docker, no engine"])
def test_debian_as_root_installs_the_distributions_packages(
    tmp_path: Path, docker_engine: bool | None
) -> None:
    # given nothing answers, no Docker engine, Debian, root
    env = machine(tmp_path, docker_engine=docker_engine, uid=0, distribution="debian")
    # when
    result = ensure_servers(env)
    # then
    assert result.returncode == 0, result.stderr
    assert "servers: installing PostgreSQL and RabbitMQ from the distribution's packages" in (
        result.stdout
    )
    assert "would run: apt-get update" in result.stdout
    assert "postgresql rabbitmq-server" in result.stdout
    assert "would run: docker" not in result.stdout


@pytest.mark.parametrize(
    ("uid", "distribution", "apt"),
    [(1000, "debian", True), (0, "fedora", False), (0, "alpine", False)],
    ids=["not root", "fedora", "alpine"],
)
def test_otherwise_it_says_what_is_missing(
    tmp_path: Path, uid: int, distribution: str, apt: bool
) -> None:
    # given nothing answers, no Docker engine, and no way to install here
    env = machine(tmp_path, docker_engine=False, uid=uid, distribution=distribution, apt=apt)
    # when
    result = ensure_servers(env)
    # then it fails, names both servers and says how to point Marketpay elsewhere
    assert result.returncode == 1
    assert "servers: none found" in result.stdout
    assert f"PostgreSQL on 127.0.0.1:{env['MARKETPAY_PG_PORT']}" in result.stderr
    assert f"RabbitMQ on 127.0.0.1:{env['MARKETPAY_AMQP_PORT']}" in result.stderr
    assert "MARKETPAY_PG_HOST=" in result.stderr
    assert "would run" not in result.stdout
