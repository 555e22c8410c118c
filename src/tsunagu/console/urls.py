from django.contrib.auth import views as auth_views
from django.urls import include, path

from tsunagu.console import (
    views,
    views_broadcasts,
    views_channels,
    views_consent,
    views_messaging,
    views_sends,
    views_settings,
    views_team,
)

app_name = "console"
urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="console/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    # settings.LOGIN_REDIRECT_URL names this one: it forwards to the user's first workspace.
    path("", views.home, name="dashboard"),
    path("w/<slug:slug>/", views.dashboard, name="ws_dashboard"),
    path("w/<slug:slug>/customers/", views.customers, name="customers"),
    path("w/<slug:slug>/customers/<int:customer_id>/", views.customer, name="customer"),
    path("w/<slug:slug>/sources/", views.sources, name="sources"),
    path("w/<slug:slug>/sources/<int:source_id>/", views.source, name="source"),
    path("w/<slug:slug>/sources/<int:source_id>/rotate-key", views.source_rotate, name="source_rotate"),
    path("w/<slug:slug>/team/", views_team.team, name="team"),
    path("w/<slug:slug>/team/members/add", views_team.member_add, name="team_member_add"),
    path("w/<slug:slug>/team/members/<str:username>/role", views_team.member_role, name="team_member_role"),
    path("w/<slug:slug>/team/members/<str:username>/remove", views_team.member_remove, name="team_member_remove"),
    path("w/<slug:slug>/team/keys/create", views_team.key_create, name="team_key_create"),
    path("w/<slug:slug>/team/keys/<int:key_id>/revoke", views_team.key_revoke, name="team_key_revoke"),
    # Messaging (views_messaging: communications; views_channels: channels, the archive, deliveries).
    path("w/<slug:slug>/messaging/", views_messaging.communications, name="communications"),
    path("w/<slug:slug>/messaging/new", views_messaging.communication_new, name="communication_new"),
    path("w/<slug:slug>/messaging/preview", views_messaging.communication_preview, name="communication_preview"),
    path("w/<slug:slug>/messaging/picker", views_messaging.customer_picker, name="customer_picker"),
    path("w/<slug:slug>/messaging/policy", views_messaging.communication_policy, name="communication_policy"),
    path("w/<slug:slug>/messaging/c/<str:key>/", views_messaging.communication_edit, name="communication"),
    path(
        "w/<slug:slug>/messaging/c/<str:key>/versions",
        views_messaging.communication_versions_page,
        name="communication_versions",
    ),
    path("w/<slug:slug>/messaging/channels/", views_channels.channels, name="channels"),
    path("w/<slug:slug>/messaging/channels/<int:channel_id>/", views_channels.channel, name="channel"),
    path(
        "w/<slug:slug>/messaging/channels/<int:channel_id>/toggle",
        views_channels.channel_toggle,
        name="channel_toggle",
    ),
    path(
        "w/<slug:slug>/messaging/channels/<int:channel_id>/delete",
        views_channels.channel_remove,
        name="channel_delete",
    ),
    path("w/<slug:slug>/messaging/channels/<int:channel_id>/test", views_channels.channel_test, name="channel_test"),
    path("w/<slug:slug>/messaging/broadcasts/", views_broadcasts.broadcasts, name="broadcasts"),
    path("w/<slug:slug>/messaging/broadcasts/<int:broadcast_id>/", views_broadcasts.broadcast, name="broadcast"),
    path(
        "w/<slug:slug>/messaging/broadcasts/<int:broadcast_id>/<str:action>",
        views_broadcasts.broadcast_action,
        name="broadcast_action",
    ),
    path("w/<slug:slug>/messaging/archive/", views_channels.archive, name="archive"),
    path("w/<slug:slug>/messaging/settings/", views_settings.messaging_settings, name="messaging_settings"),
    path("w/<slug:slug>/messaging/archive/<int:delivery_id>/", views_channels.delivery, name="delivery"),
    path("w/<slug:slug>/messaging/sends/<int:send_id>/", views_sends.send_page, name="send"),
    path(
        "w/<slug:slug>/customers/<int:customer_id>/messages/",
        views_channels.customer_messages_page,
        name="customer_messages",
    ),
    path(
        "w/<slug:slug>/customers/<int:customer_id>/consent/",
        views_consent.customer_consent,
        name="customer_consent",
    ),
]
