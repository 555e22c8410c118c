"""Run a command against a temporary PostgreSQL cluster: initdb in a temp dir, start on a free loopback
port, export TSUNAGU_DATABASE_URL, run the command, stop and delete the cluster.

PostgreSQL refuses to run as root, so when we are root (as in CI) the server runs as the ``postgres``
user that Debian's package creates. Without PostgreSQL binaries the run is reported and skipped with exit
0, unless TSUNAGU_REQUIRE_POSTGRES=1 (CI sets it) makes that an error.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile


def _bindir() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: with_postgres.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    bindir = _bindir()
    if bindir is None:
        if os.environ.get("TSUNAGU_REQUIRE_POSTGRES") == "1":
            print("with_postgres: PostgreSQL binaries not found (apt-get install postgresql)", file=sys.stderr)
            return 1
        print("with_postgres: PostgreSQL binaries not found; the PostgreSQL run is skipped", file=sys.stderr)
        return 0
    as_user: list[str] = []
    root = tempfile.mkdtemp(prefix="tsunagu-pg-")
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(root, "data")
    port = _free_port()
    log = os.path.join(root, "server.log")
    try:
        subprocess.run(
            [*as_user, f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200"
        subprocess.run(
            [*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "start"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        env = {
            **os.environ,
            "TSUNAGU_DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/tsunagu",
            "TSUNAGU_DATA_DIR": tempfile.mkdtemp(prefix="tsunagu-data-"),
        }
        print(f"with_postgres: PostgreSQL from {bindir} on 127.0.0.1:{port}", file=sys.stderr)
        return subprocess.run(argv, env=env).returncode
    finally:
        subprocess.run(
            [*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
