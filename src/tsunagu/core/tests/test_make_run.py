"""A fresh clone: `make run` creates .venv, installs, migrates, loads the demo once, prints the login and
serves the console; Ctrl-C stops it. This is the first thing a new user does, so it is tested as they do
it — from a clean `git clone` with nothing installed by hand."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tsunagu.testing.live import free_port

pytestmark = [pytest.mark.live, pytest.mark.makerun]

REPO = Path(__file__).resolve().parents[4]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
        return response.status, response.read().decode()


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the git checkout to clone")
def test_make_run_from_a_fresh_clone(tmp_path):
    clone = tmp_path / "tsunagu"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TSUNAGU_", "DJANGO_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p and "venv/bin" not in p
    )
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        ["make", "run", f"PORT={port}", f"PYTHON={shutil.which('python3') or 'python3'}"],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 900
        status = 0
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, page = _get(f"http://127.0.0.1:{port}/login/")
                break
            except OSError:
                time.sleep(1)
        output = (tmp_path / "run.log").read_text(errors="replace")
        assert status == 200, output[-3000:]
        assert "<form" in page and "password" in page
        assert (clone / ".venv" / "bin" / "tsunagu").exists()
        assert (clone / "var" / "tsunagu.sqlite3").exists()
        # The printed login URL names the port the server runs on (`make run PORT=…`), not a default.
        assert re.search(rf"http://127\.0\.0\.1:{port}(?!\d)", output), output[-3000:]
        assert "demo" in output
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
