"""`make up REPLICAS=2`: the Procfile under honcho's concurrency (as scripts/up.sh starts it,
`-p 5000 -c checkout=2,...`) gives each replica its own port, the service's port + 100 n, and
every process the servers `make up` was pointed at."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from honcho.environ import expand_processes, parse_procfile

ROOT = Path(__file__).resolve().parents[2]
SCALED = ("checkout", "webhooks", "capture", "payouts", "exports")
PORTS = {
    "tenants": 8086,
    "checkout": 8081,
    "webhooks": 8082,
    "capture": 8083,
    "payouts": 8084,
    "exports": 8085,
    "backoffice": 8087,
}


def environments(replicas: int, env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each process's MARKETPAY_* environment, as its Procfile line's shell makes it."""
    procfile = parse_procfile((ROOT / "Procfile").read_text())
    concurrency = dict.fromkeys(SCALED, replicas)
    found = {}
    for process in expand_processes(procfile.processes, concurrency=concurrency, port=5000):
        command = re.sub(r"exec \S+ -m \w+$", "exec env", process.cmd)
        assert command != process.cmd, process.cmd
        result = subprocess.run(
            ["/bin/sh", "-c", command],
            env={"PATH": os.environ["PATH"], **env, **process.env},
            capture_output=True,
            text=True,
            check=True,
        )
        found[process.name] = dict(
            line.split("=", 1)
            for line in result.stdout.splitlines()
            if line.startswith("MARKETPAY_")
        )
    return found


def test_two_replicas_of_each_consumer_listen_on_their_own_ports():
    # when
    found = environments(2, {})
    # then
    ports = {name: int(env["MARKETPAY_HTTP_PORT"]) for name, env in found.items()}
    for service in SCALED:
        assert ports[f"{service}.1"] == PORTS[service]
        assert ports[f"{service}.2"] == PORTS[service] + 100
    assert ports["tenants.1"] == PORTS["tenants"]
    assert "tenants.2" not in ports
    assert len(set(ports.values())) == len(ports)
    assert "127.0.0.1:5432" in found["capture.2"]["MARKETPAY_DATABASE_URL"]


def test_one_replica_keeps_the_documented_ports_and_the_servers_can_be_elsewhere():
    # when make up was pointed at other servers
    found = environments(
        1,
        {
            "MARKETPAY_PG_HOST": "db.internal",
            "MARKETPAY_PG_PORT": "6432",
            "MARKETPAY_AMQP_HOST": "mq.internal",
        },
    )
    # then
    assert {
        name: int(env["MARKETPAY_HTTP_PORT"])
        for name, env in found.items()
        if name != "psp_sandbox.1"
    } == {f"{s}.1": p for s, p in PORTS.items()}
    capture = found["capture.1"]
    assert capture["MARKETPAY_DATABASE_URL"] == (
        "postgresql://marketpay_capture@db.internal:6432/marketpay"
    )
    assert capture["MARKETPAY_AMQP_URL"] == "amqp://guest:guest@mq.internal:5672/"
