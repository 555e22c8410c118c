from django.contrib import admin

from tsunagu.core.models import ApiKey, AuditEntry, Job, Membership, Workspace


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "timezone", "created_at")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("workspace", "user", "role")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("workspace", "name", "prefix", "created_at", "revoked_at")
    readonly_fields = ("token_hash",)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("workspace", "actor", "action", "target", "at")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("kind", "status", "due_at", "attempts", "locked_by")
    list_filter = ("status", "kind")
