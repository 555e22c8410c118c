"""The Django admin: a view of the core's rows whose writes go through the same services as the console, the
API and the CLI (so they are role-checked and audited). What no service changes is read-only here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from tsunagu.core.errors import TsunaguError
from tsunagu.core.models import ApiKey, AuditEntry, Job, Membership, Workspace
from tsunagu.core.permissions import Perm, authorize, authorize_grant
from tsunagu.core.services import (
    apikey_create,
    apikey_revoke,
    membership_add,
    membership_change_role,
    membership_remove,
    workspace_create,
)


def checked_form(form_class: type[forms.ModelForm], request: HttpRequest, check: Any) -> type[forms.ModelForm]:
    """``form_class`` whose ``clean()`` asks ``check(request, cleaned_data)`` first, so that a refusal by the
    permission table shows on the form instead of failing in ``save_model``."""

    class Checked(form_class):  # type: ignore[valid-type,misc]
        def clean(self) -> Any:
            data = super().clean()
            if not self.errors:
                try:
                    check(request, data, self.instance)
                except TsunaguError as exc:
                    raise forms.ValidationError(exc.message) from exc
            return data

    return Checked


class ServiceAdmin(admin.ModelAdmin):
    """Add through a service; change only what ``change_fields`` names; never delete unless allowed."""

    add_fields: tuple[str, ...] = ()
    change_fields: tuple[str, ...] = ()

    def authorize_form(self, request: HttpRequest, data: dict[str, Any], instance: Any) -> None:  # pragma: no cover
        """Raise the service's refusal (PermissionDenied) before the form is accepted."""

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_fields if obj is None else super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return [f.name for f in self.model._meta.fields if f.name not in self.change_fields]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        return checked_form(super().get_form(request, obj, change=change, **kwargs), request, self.authorize_form)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def adopt(self, obj: Any, created: Any) -> None:
        """Make the admin's unsaved ``obj`` the row the service created (the admin logs and redirects to it)."""
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if not k.startswith("_")})
        obj._state = created._state


@admin.register(Workspace)
class WorkspaceAdmin(ServiceAdmin):
    list_display = ("slug", "name", "timezone", "created_at")
    add_fields = ("name", "slug", "timezone")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            created = workspace_create(name=obj.name, slug=obj.slug or None, timezone=obj.timezone, actor=request.user)
            self.adopt(obj, created)


@admin.register(Membership)
class MembershipAdmin(ServiceAdmin):
    list_display = ("workspace", "user", "role")
    add_fields = ("workspace", "user", "role")
    change_fields = ("role",)

    def authorize_form(self, request: HttpRequest, data: dict[str, Any], instance: Any) -> None:
        workspace = data.get("workspace") or instance.workspace
        authorize(actor=request.user, workspace=workspace, perm=Perm.MEMBERS)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super(ServiceAdmin, self).has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            membership_change_role(workspace=obj.workspace, user=obj.user, role=obj.role, actor=request.user)
        else:
            self.adopt(obj, membership_add(workspace=obj.workspace, user=obj.user, role=obj.role, actor=request.user))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        membership_remove(workspace=obj.workspace, user=obj.user, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset.select_related("workspace", "user"):
            self.delete_model(request, membership)


@admin.register(ApiKey)
class ApiKeyAdmin(ServiceAdmin):
    list_display = ("workspace", "name", "role", "prefix", "created_at", "revoked_at")
    add_fields = ("workspace", "name", "role")
    actions = ["revoke"]

    def authorize_form(self, request: HttpRequest, data: dict[str, Any], instance: Any) -> None:
        authorize_grant(actor=request.user, workspace=data["workspace"], perm=Perm.API_KEYS, role=data["role"])

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            key, token = apikey_create(workspace=obj.workspace, name=obj.name, role=obj.role, actor=request.user)
            self.adopt(obj, key)
            # Shown once, as everywhere else: only its hash is stored.
            messages.warning(request, f"API token (shown once, copy it now): {token}")

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset.select_related("workspace"):
            try:
                apikey_revoke(workspace=key.workspace, key_id=key.pk, actor=request.user)
            except TsunaguError as exc:
                messages.error(request, exc.message)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The log is written by services only: no one adds, edits or deletes an entry here."""

    list_display = ("workspace", "actor", "actor_kind", "action", "target", "at")
    list_filter = ("action", "actor_kind")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("kind", "status", "due_at", "attempts", "locked_by")
    list_filter = ("status", "kind")
