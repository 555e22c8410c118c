from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path

from tsunagu.api import api
from tsunagu.events import metrics, tracking
from tsunagu.events.selectors import ingestion_overview
from tsunagu.messaging import views as messaging_views
from tsunagu.messaging import views_preferences


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database answers and is migrated; says how far behind the applier is."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM django_migrations LIMIT 1")
        ingestion = ingestion_overview()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return JsonResponse({"status": "unavailable", "error": type(exc).__name__}, status=503)
    return JsonResponse(
        {
            "status": "ready",
            "ingestion": {"pending": ingestion["pending"], "oldest_pending_ms": ingestion["oldest_pending_ms"]},
        }
    )


def prometheus(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: Prometheus text format. Like /healthz it carries no customer data; restrict it at
    the proxy if counts are sensitive to you."""
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", prometheus, name="metrics"),
    path("v1/batch", tracking.batch, name="v1-batch"),
    path("v1/import", tracking.batch, name="v1-import"),
    path("v1/identify", tracking.identify, name="v1-identify"),
    path("v1/track", tracking.track, name="v1-track"),
    path("v1/page", tracking.page, name="v1-page"),
    path("v1/screen", tracking.screen, name="v1-screen"),
    path("v1/group", tracking.group, name="v1-group"),
    path("v1/alias", tracking.alias, name="v1-alias"),
    # analytics.js (analytics-next) uses one-letter paths, and /b when it batches.
    path("v1/i", tracking.identify),
    path("v1/t", tracking.track),
    path("v1/p", tracking.page),
    path("v1/s", tracking.screen),
    path("v1/g", tracking.group),
    path("v1/a", tracking.alias),
    # analytics-next batches to https://{apiHost}/b, and apiHost usually ends in /v1.
    path("v1/b", tracking.browser_batch),
    path("b", tracking.browser_batch),
    path("m/in/<str:token>/<str:webhook>", messaging_views.inbound, name="messaging-inbound"),
    path("m/u/<str:token>", messaging_views.unsubscribe, name="messaging-unsubscribe"),
    path("m/p/<str:token>", views_preferences.preferences, name="messaging-preferences"),
    path("m/o/<str:token>.gif", messaging_views.track_open, name="messaging-open"),
    path("m/c/<str:token>", messaging_views.track_click, name="messaging-click"),
    path("m/push/<str:token>/subscribe", messaging_views.push_subscribe, name="messaging-push-subscribe"),
    path("api/v1/", api.urls),
    path("api/v1/", include(api.not_found_urls)),
    path("admin/", admin.site.urls),
    path("", include("tsunagu.console.urls")),
]
