from django.contrib.auth import views as auth_views
from django.urls import include, path

from tsunagu.console import views, views_team

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
]
