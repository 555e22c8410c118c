"""`tsunagu up` serves web and worker in one process tree and Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tsunagu.testing.live import LiveServer

pytestmark = pytest.mark.live


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_up(server: LiveServer) -> subprocess.Popen[bytes]:
    """`tsunagu up` in its own session (as a terminal would run it), ready to serve."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tsunagu.cli", "up", "--port", str(server.port), "--workers", "1"],
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    server.process = process
    try:
        server.wait_ready(timeout=60)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return process


def test_up_serves_web_and_worker_and_stops_on_ctrl_c(tmp_path):
    server = LiveServer(data_dir=tmp_path / "up")
    process = _start_up(server)
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
            assert response.status == 200
        # The worker is a child of `up` and has scheduled its recurring maintenance job.
        deadline = time.monotonic() + 20
        scheduled = ""
        while time.monotonic() < deadline:
            rows = subprocess.run(
                [sys.executable, "-c", _COUNT_JOBS],
                env=server.env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            if rows and int(rows) > 0:
                scheduled = rows
                break
            time.sleep(0.3)
        assert scheduled, "the worker never scheduled its recurring job"
        tree = _children(process.pid)
        assert len(tree) >= 2, "expected a web process and the worker under `up`"
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            time.sleep(0.1)
        assert not any(_alive(p) for p in tree), "a child of `tsunagu up` outlived Ctrl-C"
        assert b"Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


_COUNT_JOBS = """
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")
django.setup()
from tsunagu.core.models import Job
print(Job.objects.filter(idempotency_key__startswith="recurring:").count())
"""


def test_up_stops_everything_when_a_part_dies(tmp_path):
    server = LiveServer(data_dir=tmp_path / "up-dies")
    process = _start_up(server)
    try:
        tree = _children(process.pid)
        workers = [p for p in tree if b"worker" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")]
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        assert process.wait(timeout=30) == 1
        assert b"worker exited" in process.stderr.read()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            time.sleep(0.1)
        assert not any(_alive(p) for p in tree), "the web server kept running without its worker"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
