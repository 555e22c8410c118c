"""The ``tsunagu`` command. Thin: parse arguments, call services, print. Users' scripts rely on these
sub-commands and their ``--json`` output; keep them stable.

Bad arguments exit 2 with one line on stderr; errors from services map through ``TsunaguError.exit_code``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
from typing import Any, NoReturn

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


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False) if getattr(args, "json", False) else text)


def _workspace(slug: str) -> Any:
    from tsunagu.core.errors import NotFound
    from tsunagu.core.selectors import workspace_get

    workspace = workspace_get(slug=slug)
    if workspace is None:
        raise NotFound(f"workspace {slug!r} not found")
    return workspace


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


def _cli_actor() -> Any:
    """Whoever runs ``tsunagu`` can read the database file: the CLI acts as an owner, named in the audit log
    by the operating-system user."""
    import getpass

    from tsunagu.core.permissions import System

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return System(f"tsunagu CLI ({who})")


def _user(username: str) -> Any:
    from tsunagu.core.errors import NotFound
    from tsunagu.core.selectors import user_get

    user = user_get(username=username)
    if user is None:
        raise NotFound(f"user {username!r} not found", field="username")
    return user


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def cmd_createuser(args: argparse.Namespace) -> int:
    from django.db import transaction
    from django.utils import translation

    from tsunagu.core.errors import ValidationError
    from tsunagu.core.services import membership_add, user_create

    if args.role is not None and not args.workspace:
        raise ValidationError("--role needs --workspace (the workspace the role is in)", field="role")
    password = args.password or os.environ.get("TSUNAGU_PASSWORD")
    if not password:
        raise ValidationError("give --password or set TSUNAGU_PASSWORD", field="password")
    workspace = _workspace(args.workspace) if args.workspace else None
    # One transaction: a membership that fails (bad role) must not leave a user behind that blocks a retry.
    # Django's validators speak the active language; the CLI speaks English like all its other messages.
    with transaction.atomic(), translation.override("en"):
        user = user_create(
            username=args.username, password=password, email=args.email or "", is_superuser=args.superuser
        )
        if workspace is not None:
            membership_add(workspace=workspace, user=user, role=args.role or "owner", actor=_cli_actor())
    _emit(args, {"username": user.username}, f"created user {user.username}")
    return 0


def cmd_workspace_create(args: argparse.Namespace) -> int:
    from tsunagu.core.services import workspace_create

    ws = workspace_create(name=args.name, slug=args.slug, actor=_cli_actor())
    _emit(args, {"slug": ws.slug, "name": ws.name}, ws.slug)
    return 0


def _source_dict(source: Any) -> dict[str, Any]:
    return {"id": source.pk, "name": source.name, "channel": source.channel, "write_key": source.write_key}


def cmd_source_create(args: argparse.Namespace) -> int:
    from tsunagu.events.services import source_create

    source = source_create(
        workspace=_workspace(args.workspace), name=args.name, channel=args.channel, actor=_cli_actor()
    )
    _emit(args, _source_dict(source), source.write_key)
    return 0


def cmd_source_list(args: argparse.Namespace) -> int:
    from tsunagu.events.selectors import source_list

    sources = list(source_list(workspace=_workspace(args.workspace)).order_by("id"))
    rows = [["ID", "NAME", "CHANNEL", "WRITE KEY"]]
    rows += [[str(s.pk), s.name, s.channel, s.write_key] for s in sources]
    _emit(args, {"items": [_source_dict(s) for s in sources]}, _table(rows))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """History through the one way in: validated like /v1/batch, appended to the ingest log, applied by the
    applier (a running worker, or this process with --apply)."""
    from tsunagu.core.errors import NotFound
    from tsunagu.events.selectors import ingestion_status, source_get
    from tsunagu.events.services import events_import

    workspace = _workspace(args.workspace)
    source = source_get(workspace=workspace, source_id=args.source)
    if source is None:
        raise NotFound(f"source {args.source} not found in workspace {workspace.slug!r}", field="source")

    def waiting(seconds: int) -> None:
        if args.apply:  # no worker to wait for: make room by applying here
            from tsunagu.events.applier import events_apply_pending

            events_apply_pending(workspace_id=workspace.pk, timeout=300)
            return
        print(f"tsunagu import: backlog full, waiting {seconds} s for the applier", file=sys.stderr)

    if args.file == "-":
        result = events_import(source=source, lines=sys.stdin.buffer, on_wait=waiting)
    else:
        try:
            handle = open(args.file, "rb")  # noqa: SIM115 - closed below, after the import
        except OSError as exc:
            raise NotFound(f"cannot read {args.file}: {exc.strerror}", field="file") from exc
        with handle:
            result = events_import(source=source, lines=handle, on_wait=waiting)
    applied = None
    if args.apply:
        from tsunagu.events.applier import events_apply_pending

        applied = events_apply_pending(workspace_id=workspace.pk, timeout=300).stored
    status = ingestion_status(workspace_id=workspace.pk)
    rejected = [{"line": n, "field": f, "message": m} for n, f, m in result.rejected]
    text = f"appended {result.appended} events to the ingest log; {status['pending']} waiting to be applied"
    if applied is not None:
        text += f" (applied {applied} in this process)"
    if rejected:
        first = rejected[0]
        text += f"; rejected {len(rejected)} lines, first line {first['line']}: {first['field']}: {first['message']}"
    _emit(args, {"appended": result.appended, "applied": applied, "rejected": rejected, **status}, text)
    # Valid events are kept either way; a rejected line is bad input, so the exit status says so.
    return 2 if rejected else 0


def _key_dict(key: Any) -> dict[str, Any]:
    return {
        "id": key.pk,
        "name": key.name,
        "prefix": key.prefix,
        "role": key.role,
        "created_at": _when(key.created_at),
        "last_used_at": key.last_used_at and _when(key.last_used_at),
        "revoked_at": key.revoked_at and _when(key.revoked_at),
    }


def cmd_apikey_create(args: argparse.Namespace) -> int:
    from tsunagu.core.services import apikey_create

    key, token = apikey_create(
        workspace=_workspace(args.workspace), name=args.name, role=args.role, actor=_cli_actor()
    )
    _emit(args, {"id": key.pk, "token": token, "role": key.role}, token)
    return 0


def cmd_apikey_list(args: argparse.Namespace) -> int:
    from tsunagu.core.selectors import apikey_list

    keys = list(apikey_list(workspace=_workspace(args.workspace)))
    rows = [["ID", "NAME", "ROLE", "PREFIX", "CREATED", "REVOKED"]]
    rows += [[str(k.pk), k.name, k.role, k.prefix, _when(k.created_at), _when(k.revoked_at)] for k in keys]
    _emit(args, {"items": [_key_dict(k) for k in keys]}, _table(rows))
    return 0


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    from tsunagu.core.services import apikey_revoke

    key = apikey_revoke(workspace=_workspace(args.workspace), key_id=args.id, actor=_cli_actor())
    _emit(args, _key_dict(key), f"revoked API key {key.pk} ({key.name})")
    return 0


def cmd_member_add(args: argparse.Namespace) -> int:
    from tsunagu.core.services import membership_add

    workspace = _workspace(args.workspace)
    m = membership_add(workspace=workspace, user=_user(args.username), role=args.role, actor=_cli_actor())
    _emit(args, {"username": args.username, "role": m.role}, f"{args.username} is now {m.role} of {workspace.slug}")
    return 0


def cmd_member_list(args: argparse.Namespace) -> int:
    from tsunagu.core.selectors import membership_list

    members = list(membership_list(workspace=_workspace(args.workspace)))
    rows = [["USERNAME", "ROLE", "SINCE"]] + [[m.user.username, m.role, _when(m.created_at)] for m in members]
    items = [{"username": m.user.username, "role": m.role, "created_at": _when(m.created_at)} for m in members]
    _emit(args, {"items": items}, _table(rows))
    return 0


def cmd_member_role(args: argparse.Namespace) -> int:
    from tsunagu.core.services import membership_change_role

    workspace = _workspace(args.workspace)
    m = membership_change_role(workspace=workspace, user=_user(args.username), role=args.role, actor=_cli_actor())
    _emit(args, {"username": args.username, "role": m.role}, f"{args.username} is now {m.role} of {workspace.slug}")
    return 0


def cmd_member_remove(args: argparse.Namespace) -> int:
    from tsunagu.core.services import membership_remove

    workspace = _workspace(args.workspace)
    membership_remove(workspace=workspace, user=_user(args.username), actor=_cli_actor())
    _emit(args, {"username": args.username}, f"{args.username} removed from {workspace.slug}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    _require_migrated("worker")
    import threading

    import tsunagu.core.handlers  # noqa: F401  (registers job handlers)
    from tsunagu.core.worker import run_worker
    from tsunagu.events.applier import start_applier

    # The applier (the ingest log -> profiles, timeline, reactions) in a thread beside the jobs loop; the
    # same stop event ends both on SIGTERM/SIGINT.
    stop = threading.Event()
    applier = start_applier(stop)
    run_worker(stop=stop)
    stop.set()
    applier.join(timeout=30)
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
    p = sub.add_parser("import", help="import events (NDJSON, one Segment event per line) through the ingest log")
    p.add_argument("file", help="the file, or - for standard input")
    p.add_argument("--workspace", required=True)
    p.add_argument("--source", type=int, required=True, help="id of the source the events come from")
    p.add_argument("--apply", action="store_true", help="apply them in this process too (no worker needed)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)
    p = src.add_parser("list")
    p.add_argument("--workspace", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_source_list)

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
