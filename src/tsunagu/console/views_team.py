"""The owners' page of a workspace: members (add an existing user, change a role, remove) and API keys (create,
showing the token once; revoke). Owners and superusers only; the services check the same rule again."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from tsunagu.console.views import _page, workspace_page
from tsunagu.core.errors import TsunaguError
from tsunagu.core.selectors import apikey_list, member_user, membership_list, user_can_manage_members, user_get
from tsunagu.core.services import (
    apikey_create,
    apikey_revoke,
    membership_add,
    membership_change_role,
    membership_remove,
)

ROLE_CHOICES = [
    ("owner", gettext_lazy("Owner")),
    ("admin", gettext_lazy("Admin")),
    ("operator", gettext_lazy("Operator")),
    ("agent", gettext_lazy("Agent")),
    ("viewer", gettext_lazy("Viewer")),
]
ROLE_LABELS = dict(ROLE_CHOICES)


class MemberForm(forms.Form):
    username = forms.CharField(label=gettext_lazy("Username"), max_length=150, strip=True)
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=ROLE_CHOICES, initial="operator")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class KeyForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100, strip=True)
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=ROLE_CHOICES, initial="admin")


def _owners_only(request: HttpRequest, workspace: Any) -> None:
    if not user_can_manage_members(workspace=workspace, user=request.user):
        raise PermissionDenied


def _team_page(
    request: HttpRequest, workspace: Any, *, member_form: MemberForm | None = None, key_form: KeyForm | None = None,
    new_token: str | None = None, status: int = 200,
) -> HttpResponse:
    members = [
        {"username": m.user.get_username(), "role": m.role, "role_label": ROLE_LABELS.get(m.role, m.role),
         "created_at": m.created_at}
        for m in membership_list(workspace=workspace)
    ]
    keys = [
        {"key": k, "role_label": ROLE_LABELS.get(k.role, k.role)} for k in apikey_list(workspace=workspace)[:200]
    ]
    response = _page(
        request, workspace, "team.html", "team",
        members=members, keys=keys, roles=ROLE_CHOICES,
        member_form=member_form or MemberForm(), key_form=key_form or KeyForm(), new_token=new_token,
    )
    response.status_code = status
    return response


@workspace_page
def team(request: HttpRequest, workspace: Any) -> HttpResponse:
    _owners_only(request, workspace)
    return _team_page(request, workspace)


def _done(request: HttpRequest, workspace: Any, text: str) -> HttpResponse:
    messages.success(request, text)
    return redirect("console:team", slug=workspace.slug)


def _failed(request: HttpRequest, workspace: Any, exc: TsunaguError) -> HttpResponse:
    messages.error(request, exc.message)
    return redirect("console:team", slug=workspace.slug)


@workspace_page
@require_POST
def member_add(request: HttpRequest, workspace: Any) -> HttpResponse:
    _owners_only(request, workspace)
    form = MemberForm(request.POST)
    if not form.is_valid():
        return _team_page(request, workspace, member_form=form, status=400)
    user = user_get(username=form.cleaned_data["username"])
    if user is None:
        form.add_error("username", _("No user has this name. Create it first with `tsunagu createuser`."))
        return _team_page(request, workspace, member_form=form, status=400)
    try:
        membership_add(workspace=workspace, user=user, role=form.cleaned_data["role"], actor=request.user)
    except TsunaguError as exc:
        form.add_error(None, exc.message)
        return _team_page(request, workspace, member_form=form, status=exc.http_status)
    return _done(request, workspace, _("%(name)s was added.") % {"name": user.get_username()})


def _member_user(workspace: Any, username: str) -> Any:
    user = member_user(workspace=workspace, username=username)
    if user is None:
        raise Http404("member not found")
    return user


@workspace_page
@require_POST
def member_role(request: HttpRequest, workspace: Any, username: str) -> HttpResponse:
    _owners_only(request, workspace)
    user = _member_user(workspace, username)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _team_page(request, workspace, status=400)
    try:
        membership_change_role(workspace=workspace, user=user, role=form.cleaned_data["role"], actor=request.user)
    except TsunaguError as exc:
        return _failed(request, workspace, exc)
    return _done(request, workspace, _("The role of %(name)s was changed.") % {"name": username})


@workspace_page
@require_POST
def member_remove(request: HttpRequest, workspace: Any, username: str) -> HttpResponse:
    _owners_only(request, workspace)
    user = _member_user(workspace, username)
    try:
        membership_remove(workspace=workspace, user=user, actor=request.user)
    except TsunaguError as exc:
        return _failed(request, workspace, exc)
    return _done(request, workspace, _("%(name)s was removed.") % {"name": username})


@workspace_page
@require_POST
def key_create(request: HttpRequest, workspace: Any) -> HttpResponse:
    _owners_only(request, workspace)
    form = KeyForm(request.POST)
    if not form.is_valid():
        return _team_page(request, workspace, key_form=form, status=400)
    try:
        _key, token = apikey_create(
            workspace=workspace, name=form.cleaned_data["name"], role=form.cleaned_data["role"], actor=request.user
        )
    except TsunaguError as exc:
        form.add_error(None, exc.message)
        return _team_page(request, workspace, key_form=form, status=exc.http_status)
    # Rendered, not redirected: the token must not pass through the session's message store.
    return _team_page(request, workspace, new_token=token)


@workspace_page
@require_POST
def key_revoke(request: HttpRequest, workspace: Any, key_id: int) -> HttpResponse:
    _owners_only(request, workspace)
    try:
        key = apikey_revoke(workspace=workspace, key_id=key_id, actor=request.user)
    except TsunaguError as exc:
        if exc.http_status == 404:
            raise Http404("API key not found") from exc
        return _failed(request, workspace, exc)
    return _done(request, workspace, _("The API key “%(name)s” was revoked.") % {"name": key.name})
