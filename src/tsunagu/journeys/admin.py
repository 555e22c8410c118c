"""Journeys in the Django admin: read-only views (changes go through the console, the API or the CLI, which
validate definitions, keep versions immutable and write each run's history with its actor)."""

from django.contrib import admin

from tsunagu.journeys.models import Journey, JourneyVersion, Run


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Journey)
class JourneyAdmin(ReadOnly):
    list_display = ("key", "name", "workspace", "status", "current_version", "updated_at")
    list_filter = ("workspace", "status")


@admin.register(JourneyVersion)
class JourneyVersionAdmin(ReadOnly):
    list_display = ("journey", "number", "published_at", "published_by")


@admin.register(Run)
class RunAdmin(ReadOnly):
    list_display = ("pk", "journey", "customer", "status", "step", "due_at", "entered_at")
    list_filter = ("status",)
