from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from tsunagu.core.admin import ServiceAdmin
from tsunagu.core.errors import TsunaguError
from tsunagu.core.permissions import Perm, authorize
from tsunagu.events.models import Event, Source
from tsunagu.events.services import source_create, source_rotate_key


@admin.register(Source)
class SourceAdmin(ServiceAdmin):
    """Created through ``source_create`` (a fresh write key, an audit entry); keys change only by rotation."""

    list_display = ("name", "workspace", "channel", "created_at", "rotated_at")
    add_fields = ("workspace", "name", "channel")
    actions = ["rotate_key"]

    def authorize_form(self, request: HttpRequest, data: dict[str, Any], instance: Any) -> None:
        authorize(actor=request.user, workspace=data["workspace"], perm=Perm.SOURCES)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            created = source_create(workspace=obj.workspace, name=obj.name, channel=obj.channel, actor=request.user)
            self.adopt(obj, created)

    @admin.action(description="Rotate the write keys of the selected sources")
    def rotate_key(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset.select_related("workspace"):
            try:
                source_rotate_key(source=source, actor=request.user)
            except TsunaguError as exc:
                messages.error(request, exc.message)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("pk", "workspace", "type", "event", "name", "channel", "timestamp", "customer_id")
    list_filter = ("type", "channel")
    raw_id_fields = ("customer", "source")
