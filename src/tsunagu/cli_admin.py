"""The ``tsunagu`` sub-commands that manage workspaces and their data: users, workspaces, members, API keys,
sources and imports. Thin, like the rest of the CLI (``tsunagu.cli`` parses the arguments): call services
and selectors, print one line or, with ``--json``, one JSON object. Users' scripts rely on these outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False) if getattr(args, "json", False) else text)


def _workspace(slug: str) -> Any:
    from tsunagu.core.errors import NotFound
    from tsunagu.core.selectors import workspace_get

    workspace = workspace_get(slug=slug)
    if workspace is None:
        raise NotFound(f"workspace {slug!r} not found")
    return workspace


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


# -- segments ---------------------------------------------------------------------------------------------

def _rule_file(path: str) -> Any:
    """The JSON rule in ``path`` (``-``: standard input); a missing file or bad JSON is a bad argument."""
    from tsunagu.core.errors import ValidationError

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror or exc}", field="rule") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{path} is not UTF-8 text", field="rule") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                              field="rule") from None


def cmd_segment_count(args: argparse.Namespace) -> int:
    """How many customers a rule matches, without saving it; its warnings (unknown names) on stderr."""
    from tsunagu.segments.rule import rule_parse
    from tsunagu.segments.selectors import rule_count, rule_warnings

    workspace = _workspace(args.workspace)
    parsed = rule_parse(_rule_file(args.rule))
    warnings = rule_warnings(workspace=workspace, parsed=parsed)
    count = rule_count(workspace=workspace, rule=parsed)
    if args.json:
        print(json.dumps({"count": count, "warnings": warnings}, ensure_ascii=False))
    else:
        for w in warnings:
            hint = f" (did you mean {', '.join(w['suggestions'])}?)" if w.get("suggestions") else ""
            print(f"tsunagu segment count: warning: {w['message']}{hint}", file=sys.stderr)
        print(count)
    return 0


def cmd_segment_export(args: argparse.Namespace) -> int:
    """A segment's members to standard output, CSV or JSON Lines (``segments.export``), streamed."""
    from tsunagu.segments.export import export_format_clean, export_traits_clean, segment_export_chunks
    from tsunagu.segments.selectors import segment_get

    fmt = export_format_clean(args.format)
    traits = export_traits_clean(args.traits)
    segment = segment_get(workspace=_workspace(args.workspace), key=args.key)
    out = sys.stdout.buffer
    try:
        for chunk in segment_export_chunks(segment=segment, fmt=fmt, traits=traits):
            out.write(chunk)
        out.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_segment_refresh(args: argparse.Namespace) -> int:
    """Re-evaluate every segment of the workspace now (the scheduled refresh, for all segments); entries
    and exits are published like the refresh's."""
    from tsunagu.segments.services import segments_refresh

    result = segments_refresh(workspace=_workspace(args.workspace), every=True)
    data = {key: {"entered": len(s.entered), "exited": len(s.exited)} for key, s in sorted(result.items())}
    lines = [f"{key}: +{d['entered']} -{d['exited']}" for key, d in data.items()]
    _emit(args, {"segments": data}, "\n".join(lines) or "no segments")
    return 0


def _journey_file(path: str) -> dict[str, Any]:
    """The journey in ``path`` (``-``: standard input) as JSON or YAML: by its suffix (``.yaml``/``.yml``
    are YAML, ``.json`` JSON), else by its first character (``{`` is JSON, anything else YAML)."""
    import yaml

    from tsunagu.core.errors import ValidationError

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror or exc}", field="file") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{path} is not UTF-8 text", field="file") from None
    lower = path.lower()
    as_yaml = lower.endswith((".yaml", ".yml")) or (not lower.endswith(".json") and not text.lstrip().startswith("{"))
    if as_yaml:
        try:
            # safe_load: a journey file builds plain data, never Python objects.
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise ValidationError(f"{path} is not YAML: {problem}{where}", field="file") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                                  field="file") from None
    if not isinstance(raw, dict):
        raise ValidationError("must be an object with key, name and definition", field="file")
    extra = sorted(set(raw) - {"key", "name", "definition"})
    if extra:
        raise ValidationError("not a field of a journey file (fields: definition, key, name)", field=str(extra[0]))
    for name in ("key", "name", "definition"):
        if name not in raw:
            raise ValidationError("is required", field=name)
    return raw


def cmd_journey_apply(args: argparse.Namespace) -> int:
    """Create the journey of a file or replace its draft; ``--publish`` publishes the draft as the next
    version. One line: the key, created or updated, and the version (``draft`` when not published)."""
    from tsunagu.core.errors import NotFound, ValidationError
    from tsunagu.journeys.selectors import journey_get
    from tsunagu.journeys.services import journey_create, journey_publish, journey_update

    workspace = _workspace(args.workspace)
    actor = _cli_actor()
    try:
        raw = _journey_file(args.file)
        try:
            journey = journey_get(workspace=workspace, key=raw["key"]) if isinstance(raw["key"], str) else None
        except NotFound:
            journey = None
        if journey is None:
            journey = journey_create(workspace=workspace, key=raw["key"], name=raw["name"],
                                     definition=raw["definition"], actor=actor)
            done = "created"
        else:
            journey = journey_update(journey=journey, definition=raw["definition"], name=raw["name"], actor=actor)
            done = "updated"
    except ValidationError as exc:
        # The field first, as the API's ``field`` names it: ``definition.steps[reminder].communication: …``.
        message = exc.message
        inner = exc.field.removeprefix("definition.") if exc.field else ""
        if inner and message.startswith(inner + ": "):
            message = message[len(inner) + 2:]
        where = f"{exc.field}: " if exc.field else ""
        print(f"tsunagu journey apply: error: {where}{message}", file=sys.stderr)
        return 2
    if args.publish:
        number = journey_publish(journey=journey, actor=actor).number
        text = f"{journey.key}: {done}, published as version {number}"
    else:
        number = journey.current_version
        text = f"{journey.key}: {done}, draft saved (published version: {number or 'none'})"
    _emit(args, {"key": journey.key, "result": done, "published": bool(args.publish), "version": number or None,
                 "status": journey.status}, text)
    return 0
