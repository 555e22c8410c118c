from django.contrib import admin

from tsunagu.customers.models import Customer, Identity, Merge


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    fields = ("type", "value", "first_seen", "source_message_id")
    readonly_fields = fields


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("pk", "workspace", "display_name", "email", "phone", "user_id", "last_seen")
    search_fields = ("display_name", "email", "phone", "user_id", "search_text")
    list_filter = ("workspace",)
    inlines = [IdentityInline]


@admin.register(Merge)
class MergeAdmin(admin.ModelAdmin):
    list_display = ("pk", "workspace", "into", "other", "event_type", "created_at", "reversed_at")
    readonly_fields = ("reason", "identities", "traits_before")
