"""The ``tsunagu`` command. Thin: parse arguments, call services, print. Users' scripts rely on these
sub-commands and their ``--json`` output; keep them stable.

Bad arguments exit 2 with one line on stderr; errors from services map through ``TsunaguError.exit_code``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
from typing import Any, NoReturn

from tsunagu.cli_admin import (
    _emit,
    cmd_apikey_create,
    cmd_apikey_list,
    cmd_apikey_revoke,
    cmd_createuser,
    cmd_import,
    cmd_journey_apply,
    cmd_member_add,
    cmd_member_list,
    cmd_member_remove,
    cmd_member_role,
    cmd_segment_count,
    cmd_segment_export,
    cmd_segment_refresh,
    cmd_source_create,
    cmd_source_list,
    cmd_workspace_create,
)

DEFAULT_PORT = 8000
# Files the processes create (the SQLite database and its -wal/-shm, lock files, the secret key, the data
# directory itself) are readable by their owner only: they hold session keys, write keys, password hashes.
UMASK = 0o077


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as the CLI contract says; usage is one `--help` away.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (1-65535)")
    return port


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def _check_serving(command: str, host: str, port: int) -> None:
    """Refuse to start, with one line, what would fail or be unsafe once serving: a port taken, an address not
    of this machine, a public address without TSUNAGU_ALLOWED_HOSTS (the console would answer to any Host)."""
    if not is_loopback(host) and not os.environ.get("TSUNAGU_ALLOWED_HOSTS", "").strip():
        print(
            f"tsunagu {command}: error: serving on {host} needs TSUNAGU_ALLOWED_HOSTS "
            "(the host names clients use, e.g. cx.example.com); see docs/deployment.md",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        print(f"tsunagu {command}: error: cannot listen on {host}: {exc.strerror}", file=sys.stderr)
        sys.exit(2)
    family, _type, _proto, _name, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "the port is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            print(f"tsunagu {command}: error: cannot listen on {_url(host, port)}: {reason}", file=sys.stderr)
            sys.exit(1)


def _require_migrated(command: str) -> None:
    """The web server and the worker refuse an unmigrated (or half-upgraded) database: one line, exit 1,
    instead of HTML 500s or a traceback a job poll."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        print(
            f"tsunagu {command}: error: the database is not migrated ({len(pending)} migrations to apply): "
            "run `tsunagu migrate` first",
            file=sys.stderr,
        )
        sys.exit(1)


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")
    import django

    django.setup()


def _database_name() -> str:
    from django.db import connection

    vendor = "SQLite" if connection.vendor == "sqlite" else "PostgreSQL"
    return f"{vendor} {connection.settings_dict['NAME']}"


def cmd_migrate(args: argparse.Namespace) -> int:
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    pending = len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    call_command("migrate", interactive=False, verbosity=1 if args.verbose else 0)
    if pending:
        print(f"tsunagu migrate: applied {pending} migrations to {_database_name()}")
    else:
        print(f"tsunagu migrate: {_database_name()} is up to date")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from tsunagu.demo import demo_load

    # A server bound to every interface is reached on loopback from this machine.
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104
    outcome = demo_load(
        customers=args.customers, events=args.events, progress=not args.quiet, url=_url(host, args.port)
    )
    _emit(args, outcome, outcome["message"])
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    _require_migrated("worker")
    import threading

    import tsunagu.core.handlers  # noqa: F401  (registers job handlers)
    from tsunagu.core.worker import run_worker
    from tsunagu.events.applier import start_applier
    from tsunagu.journeys.handlers import start_engine

    # The applier (the ingest log -> profiles, timeline, reactions) and the journey engine in threads beside
    # the jobs loop; the same stop event ends all three on SIGTERM/SIGINT.
    stop = threading.Event()
    applier = start_applier(stop)
    engine = start_engine(stop)
    run_worker(stop=stop)
    stop.set()
    applier.join(timeout=30)
    engine.join(timeout=30)
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from tsunagu.server import serve

    _check_serving("web", args.host, args.port)
    _require_migrated("web")
    if not args.under_up:
        print(f"tsunagu web: listening on {_url(args.host, args.port)}", flush=True)
    serve(host=args.host, port=args.port, workers=args.workers)
    return 0


def _clear_metrics() -> None:
    """Start the process counters of /metrics from zero: the files of earlier runs' processes would
    otherwise be added to this run's (prometheus-client's multiprocess mode keeps one file per process)."""
    import glob

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for path in glob.glob(os.path.join(directory, "*.db")):
            with contextlib.suppress(OSError):
                os.remove(path)


def cmd_up(args: argparse.Namespace) -> int:
    """Web and worker in one process tree, supervised: Ctrl-C or SIGTERM stops both, and if either dies the
    other is stopped too and ``up`` exits non-zero — a half-running platform (say, serving the API while
    no worker sends anything) must not look healthy."""
    import time

    from django.core.management import call_command

    _check_serving("up", args.host, args.port)
    call_command("migrate", interactive=False, verbosity=0)
    base = [sys.executable, "-m", "tsunagu.cli"]
    serving = ["--host", args.host, "--port", str(args.port), "--workers", str(args.workers), "--under-up"]
    print(f"tsunagu up: listening on {_url(args.host, args.port)} (web and worker)", flush=True)
    _clear_metrics()
    children = {
        "web": subprocess.Popen([*base, "web", *serving]),
        "worker": subprocess.Popen([*base, "worker"]),
    }
    stopping = False

    def _stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"tsunagu up: {name} exited with status {child.returncode}; stopping", file=sys.stderr)
                exit_code, stopping = 1, True
                break
        else:
            time.sleep(0.2)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tsunagu", description="tsunagu — open-source Customer Experience Management")
    parser.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    # String defaults go through `type` like a typed value, so a bad TSUNAGU_PORT is one line and exit 2 too
    # (and only for the commands that use it).
    def address(p: argparse.ArgumentParser, port: str) -> None:
        p.add_argument("--host", default=os.environ.get("TSUNAGU_HOST", "127.0.0.1"))
        p.add_argument("--port", type=_port, default=port)

    def serving(p: argparse.ArgumentParser) -> None:
        address(p, os.environ.get("TSUNAGU_PORT", str(DEFAULT_PORT)))
        p.add_argument("--workers", type=_positive, default=os.environ.get("TSUNAGU_WEB_WORKERS", "2"))

    p = sub.add_parser("up", help="migrate, then serve web + worker")
    serving(p)
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("web", help="serve the console, the tracking API and the REST API")
    serving(p)
    p.add_argument("--under-up", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_web)
    sub.add_parser("worker", help="run due jobs").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="create or upgrade the database").set_defaults(func=cmd_migrate)

    p = sub.add_parser("demo", help="load the demo workspace (idempotent)")
    # The address `up` will serve on, to print the console's URL; `make run PORT=9000` exports PORT.
    address(p, os.environ.get("TSUNAGU_PORT") or os.environ.get("PORT") or str(DEFAULT_PORT))
    p.add_argument("--customers", type=_positive, default=2000)
    p.add_argument("--events", type=_positive, default=50000)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    roles = "owner, admin, operator, agent or viewer"  # checked by the services, like every other value
    p = sub.add_parser("createuser", help="create a console user")
    p.add_argument("username")
    p.add_argument("--password")
    p.add_argument("--email")
    p.add_argument("--superuser", action="store_true")
    p.add_argument("--workspace", help="slug of a workspace to join")
    p.add_argument("--role", help=f"role in --workspace: {roles} (default: owner)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_createuser)

    ws = sub.add_parser("workspace", help="workspaces").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = ws.add_parser("create")
    p.add_argument("name")
    p.add_argument("--slug")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workspace_create)

    src = sub.add_parser("source", help="event sources").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = src.add_parser("create")
    p.add_argument("--workspace", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--channel", default="web")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_source_create)
    p = src.add_parser("list")
    p.add_argument("--workspace", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_source_list)

    p = sub.add_parser("import", help="import events (NDJSON, one Segment event per line) through the ingest log")
    p.add_argument("file", help="the file, or - for standard input")
    p.add_argument("--workspace", required=True)
    p.add_argument("--source", type=int, required=True, help="id of the source the events come from")
    p.add_argument("--apply", action="store_true", help="apply them in this process too (no worker needed)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)

    key = sub.add_parser("apikey", help="REST API keys").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = key.add_parser("create")
    p.add_argument("--workspace", required=True)
    p.add_argument("--name", default="cli")
    p.add_argument("--role", default="admin", help=f"{roles} (default: admin)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_apikey_create)
    p = key.add_parser("list")
    p.add_argument("--workspace", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_apikey_list)
    p = key.add_parser("revoke")
    p.add_argument("--workspace", required=True)
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_apikey_revoke)

    member = sub.add_parser("member", help="members of a workspace").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    for name, func, help_ in (
        ("add", cmd_member_add, "give an existing user a role in the workspace"),
        ("role", cmd_member_role, "change a member's role"),
        ("remove", cmd_member_remove, "remove a member"),
        ("list", cmd_member_list, "list the members"),
    ):
        p = member.add_parser(name, help=help_)
        p.add_argument("--workspace", required=True)
        if name != "list":
            p.add_argument("username")
        if name in ("add", "role"):
            p.add_argument("--role", required=True, help=roles)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)

    seg = sub.add_parser("segment", help="segments and rules").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = seg.add_parser("count", help="how many customers a rule (a JSON file, - for stdin) matches")
    p.add_argument("--workspace", required=True)
    p.add_argument("--rule", required=True, help="a file holding the rule as JSON (docs/rules.md), or -")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_segment_count)
    p = seg.add_parser("export", help="a segment's members to standard output")
    p.add_argument("--workspace", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p.add_argument("--traits", default="", help="traits to add as columns, comma separated")
    p.set_defaults(func=cmd_segment_export)
    p = seg.add_parser("refresh", help="re-evaluate every segment of the workspace now")
    p.add_argument("--workspace", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_segment_refresh)

    jrn = sub.add_parser("journey", help="journeys").add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = jrn.add_parser("apply", help="create a journey from a JSON or YAML file, or replace its draft")
    p.add_argument("file", help='a file holding {"key", "name", "definition"} (docs/journeys.md), or -')
    p.add_argument("--workspace", required=True)
    p.add_argument("--publish", action="store_true", help="publish the draft as the next version")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_journey_apply)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(UMASK)
    args = build_parser().parse_args(argv)
    if args.command in ("up", "web"):
        # Settings derive their default ALLOWED_HOSTS from the address served (tsunagu.settings).
        os.environ["TSUNAGU_HOST"] = args.host
    try:
        from tsunagu.core.dburl import DatabaseUrlError

        try:
            _setup_django()
        except DatabaseUrlError as exc:
            print(f"tsunagu: error: {exc}", file=sys.stderr)
            return 2
        from django.conf import settings
        from django.db import Error as DatabaseError

        from tsunagu.core.dburl import sqlite_restrict_files

        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            sqlite_restrict_files(str(settings.DATABASES["default"]["NAME"]))

        from tsunagu.core.errors import TsunaguError

        try:
            return int(args.func(args) or 0)
        except TsunaguError as exc:
            where = f" ({exc.field})" if exc.field else ""
            print(f"tsunagu {args.command}: error: {exc.message}{where}", file=sys.stderr)
            return exc.exit_code
        except DatabaseError as exc:
            # Unreachable or unusable database: one line naming it, not a traceback (--verbose shows it).
            if args.verbose:
                raise
            reason = " ".join(str(exc).split()) or type(exc).__name__
            print(f"tsunagu {args.command}: database error: {reason}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
