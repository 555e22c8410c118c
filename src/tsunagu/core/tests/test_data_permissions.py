"""The data directory and the SQLite files are private to the user running tsunagu: they hold session keys,
write keys and password hashes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _env(data_dir: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TSUNAGU_") and k != "PYTEST_CURRENT_TEST"},
        "TSUNAGU_DATA_DIR": str(data_dir),
    }


def _tsunagu(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tsunagu.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def permissive_umask():
    """The umask of a typical shell (022), so that only tsunagu's own care makes the files private."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_migrate_creates_a_private_data_dir_and_database(tmp_path: Path, permissive_umask: None) -> None:
    data_dir = tmp_path / "var"
    result = _tsunagu(_env(data_dir), "migrate")
    assert result.returncode == 0, result.stderr
    assert _mode(data_dir) == 0o700
    files = sorted(p.name for p in data_dir.iterdir() if p.is_file())
    assert "tsunagu.sqlite3" in files and "secret_key" in files
    for name in files:
        assert _mode(data_dir / name) == 0o600, f"{name} is {oct(_mode(data_dir / name))}"


def test_database_files_written_while_serving_are_private(tmp_path: Path, permissive_umask: None) -> None:
    """The WAL, shared-memory, ingest log and metrics files appear only once something writes: ingest one
    event through a real server (web and applier) and look at every file then."""
    from tsunagu.testing.live import LiveServer

    server = LiveServer(data_dir=tmp_path / "serving")
    server.env = {**server.env, "TSUNAGU_DATABASE_URL": f"sqlite:///{server.data_dir / 'tsunagu.sqlite3'}"}
    write_key, token, _slug = server.provision(name="Perm Shop", slug="perm-shop")
    server.start(workers=1)
    try:
        import requests

        sent = requests.post(
            f"{server.url}/v1/track", json={"userId": "u1", "event": "Viewed"}, auth=(write_key, ""), timeout=10
        )
        assert sent.status_code == 200, sent.text
        server.wait_applied(token)
        names = {p.name for p in server.data_dir.iterdir() if p.is_file()}
        log_files = {
            "ingest-log.sqlite3",
            "ingest-log.sqlite3-wal",
            "ingest-log.sqlite3.lock",
            "ingest-log.sqlite3.sync",
        }
        assert {"tsunagu.sqlite3-wal", "tsunagu.sqlite3-shm", *log_files} <= names, names
        for name in names:
            if name.startswith(("tsunagu.sqlite3", "ingest-log", "secret_key")):
                assert _mode(server.data_dir / name) == 0o600, f"{name} is {oct(_mode(server.data_dir / name))}"
        metrics = server.data_dir / "metrics"
        assert _mode(metrics) == 0o700 and list(metrics.iterdir())
        for path in metrics.iterdir():
            assert _mode(path) == 0o600, f"{path.name} is {oct(_mode(path))}"
    finally:
        server.stop()


def test_files_of_an_older_version_are_made_private(tmp_path: Path, permissive_umask: None) -> None:
    data_dir = tmp_path / "old"
    data_dir.mkdir()
    assert _tsunagu(_env(data_dir), "migrate").returncode == 0
    database = data_dir / "tsunagu.sqlite3"
    database.chmod(0o644)
    result = _tsunagu(_env(data_dir), "migrate")
    assert result.returncode == 0, result.stderr
    assert _mode(database) == 0o600
