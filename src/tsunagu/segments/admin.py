"""Segments in the Django admin: read-mostly views for operators (changes go through the console or the API,
which re-evaluate membership and audit them)."""

from django.contrib import admin

from tsunagu.segments.models import ComputedTrait, Persona, Segment


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "workspace", "member_count", "time_dependent", "refreshed_at")
    list_filter = ("workspace",)
    readonly_fields = ("rule", "deps", "member_count", "refreshed_at", "time_dependent")

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(ComputedTrait)
class ComputedTraitAdmin(admin.ModelAdmin):
    list_display = ("key", "aggregate", "event", "property", "workspace", "backfilled_at")
    list_filter = ("workspace", "aggregate")

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    list_display = ("segment", "workspace", "updated_at")
