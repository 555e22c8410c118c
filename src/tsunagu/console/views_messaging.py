"""The console's communications: list, editor (a form per variant, saved through the messaging services),
live preview of the unsaved variant for a customer the operator picks, and version history with diffs.

Channels, the archive and deliveries are in :mod:`tsunagu.console.views_channels`. Every write goes through
``tsunagu.messaging.services``, which check roles; a refusal there is a 403 here.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from tsunagu.console.policy_form import policy_section, policy_value, rows_from_policy, rows_from_post
from tsunagu.console.views import _page, workspace_page
from tsunagu.core.errors import PermissionDenied as ServicePermissionDenied
from tsunagu.core.errors import TsunaguError
from tsunagu.core.permissions import Perm, actor_role, role_allows
from tsunagu.customers.selectors import clean_query, customer_get, customer_recent, customer_search
from tsunagu.messaging.channels import TYPES, channel_class
from tsunagu.messaging.links import public_base
from tsunagu.messaging.preview import preview_variant
from tsunagu.messaging.render import variant_channels
from tsunagu.messaging.selectors import (
    communication_get,
    communication_list,
    communication_version,
    communication_versions,
    customer_sample,
)
from tsunagu.messaging.services import communication_create, communication_update

CHANNEL_LABELS = {
    "email": gettext_lazy("Email"),
    "sms": gettext_lazy("SMS"),
    "line": gettext_lazy("LINE"),
    "webpush": gettext_lazy("Web push"),
    "webhook": gettext_lazy("Webhook"),
    "in_app": gettext_lazy("In-app"),
}
TOPIC_CHOICES = [
    ("transactional", gettext_lazy("Transactional")),
    ("service", gettext_lazy("Service")),
    ("marketing", gettext_lazy("Marketing")),
]
FIELD_LABELS = {
    "subject": gettext_lazy("Subject"),
    "html": gettext_lazy("HTML"),
    "mjml": gettext_lazy("MJML"),
    "text": gettext_lazy("Text"),
    "title": gettext_lazy("Title"),
    "body": gettext_lazy("Body"),
    "url": gettext_lazy("URL"),
    "icon": gettext_lazy("Icon URL"),
    "button": gettext_lazy("Button (JSON)"),
    "flex": gettext_lazy("Flex message (JSON)"),
    "alt_text": gettext_lazy("Alternative text"),
    "payload": gettext_lazy("Payload (JSON template)"),
}
# Fields written as several lines; the others are one-line inputs.
MULTILINE = frozenset({"html", "mjml", "text", "body", "payload", "flex", "button"})
# Fields that are JSON values, not templates: parsed here so a typo is an error beside the field.
JSON_FIELDS = frozenset({"flex", "button"})
MAX_VARIANTS = 50
LOCALES = ("ja", "en")


def channel_label(type_: str) -> str:
    label = CHANNEL_LABELS.get(type_)
    return str(label) if label is not None else type_


def channel_fields(type_: str) -> tuple[str, ...] | None:
    """The variant fields of a channel type, or None when its implementation is not installed."""
    try:
        return tuple(channel_class(type_).variant_fields)
    except (KeyError, ImportError, AttributeError):
        return None


def available_types() -> list[str]:
    return [t for t in TYPES if channel_fields(t) is not None]


def can(request: HttpRequest, workspace: Any, perm: Perm) -> bool:
    return role_allows(actor_role(actor=request.user, workspace=workspace), perm)


def messaging_page(request: HttpRequest, workspace: Any, template: str, sub: str, **context: Any) -> HttpResponse:
    return _page(request, workspace, f"messaging/{template}", "messaging", sub=sub, **context)


# --- the editor's form: variants in and out ------------------------------------------------------------


def _field_rows(channel: str, values: dict[str, Any], errors: dict[str, str]) -> list[dict[str, Any]]:
    names = channel_fields(channel)
    if names is None:  # a channel whose module is not installed: keep what the variant has
        names = tuple(sorted(k for k in values if k not in ("channel", "locale")))
    rows = []
    for name in names:
        value = values.get(name, "")
        if name in JSON_FIELDS and not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False, indent=2)
        label = FIELD_LABELS.get(name)
        rows.append(
            {
                "name": name,
                "label": str(label) if label is not None else name,
                "value": value,
                "multiline": name in MULTILINE,
                "json": name in JSON_FIELDS,
                "error": errors.get(name, ""),
            }
        )
    return rows


def editor_variants(variants: list[dict[str, Any]], errors: dict[tuple[int, str], str]) -> list[dict[str, Any]]:
    """The variants as the template shows them: a fieldset each, fields with their values and errors."""
    out = []
    for i, v in enumerate(variants):
        channel = str(v.get("channel", ""))
        mine = {f: msg for (j, f), msg in errors.items() if j == i}
        out.append(
            {
                "index": i,
                "channel": channel,
                "channel_label": channel_label(channel),
                "locale": v.get("locale", ""),
                "fields": _field_rows(channel, v, mine),
                "error": mine.get("", "") or mine.get("channel", "") or mine.get("locale", ""),
            }
        )
    return out


def variants_from_post(post: QueryDict) -> tuple[list[dict[str, Any]], dict[tuple[int, str], str]]:
    """The variants of the posted editor (removed ones left out), and JSON errors by (index, field). The
    index is the variant's position in the returned list, which is what the services' errors name."""
    try:
        count = min(int(post.get("variant_count", "0")), MAX_VARIANTS)
    except ValueError:
        count = 0
    variants: list[dict[str, Any]] = []
    errors: dict[tuple[int, str], str] = {}
    for i in range(count):
        prefix = f"v{i}-"
        channel = post.get(prefix + "channel", "")
        if channel not in TYPES or post.get(prefix + "delete"):
            continue
        names = channel_fields(channel)
        if names is None:
            names = tuple(
                k[len(prefix) :]
                for k in post
                if k.startswith(prefix) and k[len(prefix) :] not in ("channel", "locale", "delete")
            )
        item: dict[str, Any] = {"channel": channel, "locale": post.get(prefix + "locale", "").strip()}
        for name in names:
            value = post.get(prefix + name, "")
            if name in JSON_FIELDS and value.strip():
                try:
                    item[name] = json.loads(value)
                except ValueError as exc:
                    errors[(len(variants), name)] = _("Not valid JSON: %(error)s") % {"error": exc}
                    item[name] = value
                continue
            item[name] = value
        variants.append(item)
    return variants, errors


def _variant_error(exc: TsunaguError, variants: list[dict[str, Any]]) -> tuple[int, str] | None:
    """(variant index, field) of a services error naming ``variants[i].field``."""
    field = exc.field or ""
    if not field.startswith("variants["):
        return None
    try:
        index_text, _sep, rest = field[len("variants[") :].partition("]")
        index = int(index_text)
    except ValueError:
        return None
    if not 0 <= index < len(variants):
        return None
    return index, rest.lstrip(".")


def _editor(
    request: HttpRequest,
    workspace: Any,
    *,
    comm: Any,
    head: dict[str, str],
    variants: list[dict[str, Any]],
    errors: dict[tuple[int, str], str] | None = None,
    field_errors: dict[str, str] | None = None,
    form_error: str = "",
    status: int = 200,
    policy: tuple[list[dict[str, str]], str] = ([], "ignore"),
    policy_errors: dict[str, str] | None = None,
) -> HttpResponse:
    default_locale = str(workspace.default_locale or "ja")
    locales = list(dict.fromkeys([default_locale, *LOCALES]))
    response = messaging_page(
        request,
        workspace,
        "editor.html",
        "communications",
        comm=comm,
        head=head,
        variants=editor_variants(variants, errors or {}),
        variant_count=len(variants),
        field_errors=field_errors or {},
        form_error=form_error,
        topics=TOPIC_CHOICES,
        types=[(t, channel_label(t)) for t in available_types()],
        locales=locales,
        can_edit=can(request, workspace, Perm.COMMUNICATIONS),
        picker=picker_choices(workspace),
        policy=editor_policy(variants, *policy, errors=policy_errors or {}),
    )
    response.status_code = status
    return response


def editor_policy(
    variants: list[dict[str, Any]], rows: list[dict[str, str]], late: str, *, errors: dict[str, str]
) -> dict[str, Any]:
    """The policy section for the variants in the form (their channels are the steps' choices)."""
    channels = variant_channels([v for v in variants if v.get("channel") in TYPES])
    return policy_section(rows, late, channels=channels, errors=errors, label=channel_label)


def picker_choices(workspace: Any, q: str = "") -> list[Any]:
    """Customers offered in the preview's picker: those matching ``q``, else the most recent ones (the
    sample customer the services check templates against comes first)."""
    if q:
        return list(customer_search(workspace=workspace, q=q)[:20])
    rows = customer_recent(workspace=workspace, limit=20)
    sample = customer_sample(workspace=workspace)
    if sample is not None and all(c.pk != sample.pk for c in rows):
        rows.insert(0, sample)
    return rows


@workspace_page
def communications(request: HttpRequest, workspace: Any) -> HttpResponse:
    from tsunagu.console.views_sends import overview_counts  # views_sends builds on this module

    rows = []
    for comm in communication_list(workspace=workspace)[:500]:
        version = communication_version(communication=comm)
        seen: list[str] = []
        for v in version.variants:
            label = f"{channel_label(str(v.get('channel')))} {v.get('locale', '')}".strip()
            if label not in seen:
                seen.append(label)
        rows.append({"comm": comm, "variants": seen, "topic_label": dict(TOPIC_CHOICES).get(comm.topic, comm.topic)})
    return messaging_page(
        request,
        workspace,
        "communications.html",
        "communications",
        rows=rows,
        can_edit=can(request, workspace, Perm.COMMUNICATIONS),
        counts=overview_counts(workspace),
    )


def _head_from_post(post: QueryDict) -> dict[str, str]:
    return {name: post.get(name, "").strip() for name in ("key", "name", "topic")}


def _save(request: HttpRequest, workspace: Any, comm: Any) -> HttpResponse:
    """Add a variant, or save through the services; errors go beside the field the error names."""
    head = _head_from_post(request.POST)
    variants, errors = variants_from_post(request.POST)
    rows, late = rows_from_post(request.POST)
    form = {"comm": comm, "head": head, "variants": variants, "policy": (rows, late)}
    if request.POST.get("action") == "add":
        channel, locale = request.POST.get("new_channel", ""), request.POST.get("new_locale", "").strip()
        if channel in available_types() and len(variants) < MAX_VARIANTS:
            variants.append({"channel": channel, "locale": locale or workspace.default_locale})
        return _editor(request, workspace, **form)
    if not can(request, workspace, Perm.COMMUNICATIONS):
        raise PermissionDenied
    policy, policy_errors = policy_value(rows, late)
    if errors or policy_errors:
        return _editor(request, workspace, **form, errors=errors, policy_errors=policy_errors, status=400)
    try:
        if comm is None:
            comm, warnings = communication_create(
                workspace=workspace,
                key=head["key"],
                name=head["name"],
                topic=head["topic"],
                variants=variants,
                policy=policy,
                actor=request.user,
            )
            number = 1
        else:
            version, warnings = communication_update(
                communication=comm, actor=request.user, variants=variants, name=head["name"], topic=head["topic"],
                policy=policy,
            )
            number = version.number
    except ServicePermissionDenied as exc:
        raise PermissionDenied from exc
    except TsunaguError as exc:
        where = _variant_error(exc, variants)
        if where is not None:
            errors[where] = exc.message
            return _editor(request, workspace, **form, errors=errors, status=400)
        if (exc.field or "").startswith("policy"):
            return _editor(request, workspace, **form, policy_errors={exc.field or "policy": exc.message}, status=400)
        if exc.field in ("key", "name", "topic"):
            return _editor(request, workspace, **form, field_errors={exc.field: exc.message}, status=400)
        return _editor(request, workspace, **form, form_error=exc.message, status=400)
    messages.success(request, _("Saved as version %(number)s.") % {"number": number})
    for warning in warnings:
        messages.warning(request, warning)
    return redirect("console:communication", slug=workspace.slug, key=comm.key)


@workspace_page
@require_http_methods(["GET", "POST"])
def communication_new(request: HttpRequest, workspace: Any) -> HttpResponse:
    if request.method == "POST":
        return _save(request, workspace, None)
    types = available_types()
    first = "email" if "email" in types else (types[0] if types else "in_app")
    return _editor(
        request,
        workspace,
        comm=None,
        head={"key": "", "name": "", "topic": "transactional"},
        variants=[{"channel": first, "locale": workspace.default_locale}],
    )


def _communication_or_404(workspace: Any, key: str) -> Any:
    comm = communication_get(workspace=workspace, key=key)
    if comm is None:
        raise Http404("communication not found")
    return comm


@workspace_page
@require_http_methods(["GET", "POST"])
def communication_edit(request: HttpRequest, workspace: Any, key: str) -> HttpResponse:
    comm = _communication_or_404(workspace, key)
    if request.method == "POST":
        return _save(request, workspace, comm)
    version = communication_version(communication=comm)
    return _editor(
        request,
        workspace,
        comm=comm,
        head={"key": comm.key, "name": comm.name, "topic": comm.topic},
        variants=[dict(v) for v in version.variants],
        policy=(rows_from_policy(comm.policy), str((comm.policy or {}).get("late_success", "ignore"))),
    )


@workspace_page
@require_POST
def communication_policy(request: HttpRequest, workspace: Any) -> HttpResponse:
    """The policy section again (an htmx fragment) for the form as it stands: after a step's channel
    changed, its wait offers what that channel reports."""
    variants, _errors = variants_from_post(request.POST)
    rows, late = rows_from_post(request.POST)
    context = {"workspace": workspace, "policy": editor_policy(variants, rows, late, errors={})}
    return render(request, "console/messaging/_policy.html", context)


# --- live preview -------------------------------------------------------------------------------------


def render_unsaved(
    *, workspace: Any, variant: dict[str, Any], topic: str, customer: Any, base_url: str
) -> dict[str, Any]:
    """An unsaved variant rendered for a customer as a send would render it (``messaging.preview``)."""
    return preview_variant(variant=variant, topic=topic, customer=customer, base_url=base_url)


@workspace_page
@require_POST
def communication_preview(request: HttpRequest, workspace: Any) -> HttpResponse:
    """The preview pane (an htmx fragment): the variant chosen in the pane, as it stands in the form."""
    variants, errors = variants_from_post(request.POST)
    customer = None
    raw_id = request.POST.get("preview_customer", "")
    if raw_id.isdigit():
        customer = customer_get(workspace=workspace, customer_id=int(raw_id))
    if customer is None:
        customer = customer_sample(workspace=workspace)
    try:
        which = int(request.POST.get("preview_variant", "0"))
    except ValueError:
        which = 0
    context: dict[str, Any] = {"workspace": workspace, "customer": customer, "variants": variants, "which": which}
    if not variants:
        context["error"] = _("Add a variant to see its preview.")
    elif not 0 <= which < len(variants):
        context["which"] = which = 0
    if variants:
        variant = variants[which]
        bad = [msg for (j, _f), msg in errors.items() if j == which]
        context["variant"] = variant
        context["channel_label"] = channel_label(str(variant["channel"]))
        if bad:
            context["error"] = bad[0]
        else:
            try:
                context["rendered"] = render_unsaved(
                    workspace=workspace,
                    variant=variant,
                    topic=request.POST.get("topic") or "transactional",
                    customer=customer,
                    base_url=public_base(request),
                )
            except (ValueError, ImportError, KeyError) as exc:
                context["error"] = str(exc)
    return render(request, "console/messaging/_preview.html", context)


@workspace_page
def customer_picker(request: HttpRequest, workspace: Any) -> HttpResponse:
    """Options of the preview's customer picker (an htmx fragment), searched by name, kana or email."""
    q = clean_query(request.GET.get("customer_q"))
    rows = picker_choices(workspace, q)
    return render(request, "console/messaging/_picker.html", {"picker": rows, "q": q})


# --- versions -----------------------------------------------------------------------------------------


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def version_diff(old: Any, new: Any) -> list[dict[str, Any]]:
    """What changed from ``old`` to ``new`` (two versions): one section per changed field of the name, the
    topic and each variant (channel/locale), with unified-diff lines. The template escapes the text."""
    sections: list[dict[str, Any]] = []

    def add(title: str, a: str, b: str) -> None:
        if a == b:
            return
        lines = []
        for line in list(difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=2))[2:]:
            kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
            lines.append({"kind": kind, "text": line})
        sections.append({"title": title, "lines": lines})

    add(_("Name"), old.name, new.name)
    add(_("Topic"), old.topic, new.topic)

    def by_key(version: Any) -> dict[tuple[str, str], dict[str, Any]]:
        return {(str(v.get("channel")), str(v.get("locale", ""))): v for v in version.variants}

    a_variants, b_variants = by_key(old), by_key(new)
    for key in list(dict.fromkeys([*a_variants, *b_variants])):
        a, b = a_variants.get(key, {}), b_variants.get(key, {})
        # In the channel's own field order: PostgreSQL's jsonb does not keep the order the fields were saved in.
        known = channel_fields(key[0]) or ()
        rest = sorted(n for n in {*a, *b} if n not in known and n not in ("channel", "locale"))
        names = [n for n in known if n in a or n in b] + rest
        title = f"{channel_label(key[0])} / {key[1]}"
        if not a or not b:
            state = _("added") if not a else _("removed")
            sections.append({"title": f"{title} ({state})", "lines": []})
        for name in names:
            label = FIELD_LABELS.get(name)
            add(f"{title} · {label if label is not None else name}", _as_text(a.get(name)), _as_text(b.get(name)))
    return sections


@workspace_page
def communication_versions_page(request: HttpRequest, workspace: Any, key: str) -> HttpResponse:
    comm = _communication_or_404(workspace, key)
    versions = list(communication_versions(communication=comm)[:200])
    numbers = {v.number for v in versions}

    def pick(name: str, default: int) -> int:
        value = request.GET.get(name, "")
        return int(value) if value.isdigit() and int(value) in numbers else default

    newest = comm.current_version
    b = pick("b", newest)
    a = pick("a", b - 1 if b - 1 in numbers else b)
    diff = None
    if a != b:
        diff = version_diff(
            communication_version(communication=comm, number=a), communication_version(communication=comm, number=b)
        )
    return messaging_page(
        request, workspace, "versions.html", "communications", comm=comm, versions=versions, a=a, b=b, diff=diff
    )
