"""The benchmark's children die with it, however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# A stand-in for the benchmark: it starts a child as `bench.processes.child` does, prints the
# child's pid, then waits to be killed.
PARENT = """
import os, subprocess, sys, time
from bench.processes import die_with_parent
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(120)"],
    preexec_fn=die_with_parent(os.getpid()),
)
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_benchmark_takes_its_children_with_it() -> None:
    # given a benchmark process with a child
    with subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        # when the benchmark is killed outright (no cleanup of its own can run)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    # then its child goes too
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
