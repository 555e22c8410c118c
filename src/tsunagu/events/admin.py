from django.contrib import admin

from tsunagu.events.models import Event, Source


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "workspace", "channel", "created_at")
    readonly_fields = ("write_key",)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("pk", "workspace", "type", "event", "name", "channel", "timestamp", "customer_id")
    list_filter = ("type", "channel")
    raw_id_fields = ("customer", "source")
