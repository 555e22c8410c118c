"""The one settings module. Everything that differs between machines comes from TSUNAGU_* variables."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from tsunagu.core.dburl import database_from_url

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("TSUNAGU_DATA_DIR", Path.cwd() / "var")).resolve()


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    """The secret key comes from the environment; on a laptop we keep a generated one in the data dir
    so sessions survive restarts without anyone having to invent a key."""
    key = os.environ.get("TSUNAGU_SECRET_KEY")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    try:
        # Private from the first byte (not chmod after writing): it signs the sessions.
        DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
            fh.write(key)
        return key
    except FileExistsError:  # another process wrote it meanwhile
        return path.read_text().strip()
    except OSError:
        return secrets.token_urlsafe(50)


SECRET_KEY = _secret_key()
DEBUG = _env_bool("TSUNAGU_DEBUG", False)


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _env_int(name: str, default: int) -> int:
    from django.core.exceptions import ImproperlyConfigured

    text = os.environ.get(name, "").strip()
    try:
        return int(text) if text else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {text!r}") from None


# -- Hosts, cookies, proxy, HSTS (docs/deployment.md) --------------------------------------------------
# The loopback names by default: any other Host (a DNS-rebinding page's) is a 400. `tsunagu web` and `up`
# refuse to bind anything but loopback without TSUNAGU_ALLOWED_HOSTS (tsunagu.cli), so these defaults never
# silently lock out a public server.
LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
ALLOWED_HOSTS = _env_list("TSUNAGU_ALLOWED_HOSTS") or LOOPBACK_HOSTS
CSRF_TRUSTED_ORIGINS = _env_list("TSUNAGU_CSRF_TRUSTED_ORIGINS")
# Behind a TLS-terminating proxy: cookies only over HTTPS, and the proxy's header (e.g. X-Forwarded-Proto)
# trusted to say a request came over HTTPS. Only set the header when the proxy always sets or strips it.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _env_bool("TSUNAGU_SECURE_COOKIES", False)
if _proxy_header := os.environ.get("TSUNAGU_PROXY_SSL_HEADER", "").strip():
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
SECURE_HSTS_SECONDS = _env_int("TSUNAGU_HSTS_SECONDS", 0)  # sent on HTTPS requests only (SecurityMiddleware)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("TSUNAGU_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# -- end of hosts, cookies, proxy, HSTS -----------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",
    "django_htmx",
    # Serves the API docs' Swagger UI from its own static files instead of a CDN (ninja.openapi.docs).
    "ninja",
    "csp",
    "tsunagu.core",
    "tsunagu.customers",
    "tsunagu.events",
    "tsunagu.segments",
    "tsunagu.messaging",
    "tsunagu.journeys",
    "tsunagu.console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "tsunagu.core.middleware.private_no_store",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# -- Content-Security-Policy (django-csp) and caching --------------------------------------------------
# Every page loads only this origin's files: no inline or third-party script, no inline <style>. The one
# exception, style *attributes*, is the console's bar charts (width set per bar in the template).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# `Cache-Control: private, no-store` on every answer to a logged-in user and every REST API answer
# (tsunagu.core.middleware.private_no_store): a shared cache or the browser's disk keeps no customer data.
# -- end of CSP and caching -----------------------------------------------------------------------------

# The tracking API (/v1/…) is served with this stack only (tsunagu.server): it is authenticated by write key,
# so sessions, auth, CSRF, locale and messages have nothing to do there.
# CommonMiddleware stays: it sets Content-Length.
TSUNAGU_TRACKING_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "tsunagu.urls"
WSGI_APPLICATION = "tsunagu.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(os.environ.get("TSUNAGU_DATABASE_URL", f"sqlite:///{DATA_DIR / 'tsunagu.sqlite3'}"))
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# -- Login throttling (django-axes) ------------------------------------------------------------------------
# Every password check (console and /admin/ log-in) goes through axes' backend first. Failures are counted in
# the database, so every web process of every machine sees the same count. A user name is locked after
# TSUNAGU_LOGIN_FAILURE_LIMIT failures whatever the address (a spread-out guess at one account), and an
# address is locked after the same number whatever the user names (one client guessing many accounts); the
# lock lifts TSUNAGU_LOGIN_COOLOFF_MINUTES after the last failure. A success clears that user's count.
AUTHENTICATION_BACKENDS = [
    "tsunagu.core.auth.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("TSUNAGU_LOGIN_FAILURE_LIMIT", 5))
AXES_COOLOFF_TIME = __import__("datetime").timedelta(minutes=int(os.environ.get("TSUNAGU_LOGIN_COOLOFF_MINUTES", 15)))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "tsunagu.console.lockout.lockout_response"
AXES_VERBOSE = False
# The address is REMOTE_ADDR (django-ipware is not installed): a client-sent X-Forwarded-For must never pick
# the address that is counted, or a guesser would rotate it freely.


LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", "日本語"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("TSUNAGU_TIME_ZONE", "Asia/Tokyo")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
# whitenoise warns about a missing STATIC_ROOT; collectstatic is optional thanks to USE_FINDERS
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:dashboard"
LOGOUT_REDIRECT_URL = "console:login"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"

# Segment's documented limits: 32 KB an event, 500 KB a batch. Django's own body cap must sit above the
# batch limit so that our handler, not Django, answers with a clear message.
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
TSUNAGU_MAX_EVENT_BYTES = 32 * 1024
TSUNAGU_MAX_BATCH_BYTES = 500 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("TSUNAGU_LOG_LEVEL", "WARNING")},
    "loggers": {"tsunagu": {"level": os.environ.get("TSUNAGU_LOG_LEVEL", "INFO"), "propagate": True}},
}

# -- the ingestion pipeline (docs/ingestion.md) -------------------------------------------------------
# The SQLite ingest log (a file of its own; on PostgreSQL the log is a table of the main database).
TSUNAGU_INGEST_LOG = os.environ.get("TSUNAGU_INGEST_LOG", "")
# Backpressure: past this many events waiting in one workspace, /v1 answers 429 with Retry-After (seconds).
TSUNAGU_INGEST_MAX_PENDING = int(os.environ.get("TSUNAGU_INGEST_MAX_PENDING", 2_000_000))
TSUNAGU_INGEST_RETRY_AFTER = int(os.environ.get("TSUNAGU_INGEST_RETRY_AFTER", 5))
TSUNAGU_INGEST_BACKLOG_TTL = float(os.environ.get("TSUNAGU_INGEST_BACKLOG_TTL", 0.5))
# Events per applier transaction, and how long a worker's claim on a workspace lasts without renewal.
TSUNAGU_APPLY_CHUNK = int(os.environ.get("TSUNAGU_APPLY_CHUNK", 5000))
# While behind, chunks double up to this many events (see events.applier._next_limit).
TSUNAGU_APPLY_CHUNK_MAX = int(os.environ.get("TSUNAGU_APPLY_CHUNK_MAX", 20000))
TSUNAGU_APPLIER_LEASE = float(os.environ.get("TSUNAGU_APPLIER_LEASE", 15))
# How long a worker's claim on journey runs lives: a worker that dies mid-turn loses its runs after it.
TSUNAGU_JOURNEY_LEASE = float(os.environ.get("TSUNAGU_JOURNEY_LEASE", 60))
# Dedup by messageId looks back this many days of receive time (0: for ever); see docs/ingestion.md.
TSUNAGU_DEDUP_WINDOW_DAYS = float(os.environ.get("TSUNAGU_DEDUP_WINDOW_DAYS", 7))

# prometheus-client's multiprocess mode: every web and worker process of this data directory writes its
# counters here, and /metrics adds them up. Set (not defaulted) before prometheus_client is first imported
# (it reads it then): a child process started with another TSUNAGU_DATA_DIR must not inherit its parent's.
METRICS_DIR = Path(os.environ.get("TSUNAGU_METRICS_DIR") or DATA_DIR / "metrics").resolve()
with contextlib.suppress(OSError):
    METRICS_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)

# Messaging: the absolute base of links in messages and of inbound webhook URLs (https://cx.example.com).
# Without it, the request's host is used where there is a request, and http://127.0.0.1:<port> otherwise.
TSUNAGU_PUBLIC_URL = os.environ.get("TSUNAGU_PUBLIC_URL", "").rstrip("/")
# How often a delivery is attempted before a temporary failure becomes final.
TSUNAGU_DELIVERY_MAX_ATTEMPTS = int(os.environ.get("TSUNAGU_DELIVERY_MAX_ATTEMPTS", "8"))
TSUNAGU_DELIVERY_LEASE = float(os.environ.get("TSUNAGU_DELIVERY_LEASE", "60"))
# Seconds between two readings of the email channels' bounce mailboxes (IMAP/POP3).
TSUNAGU_BOUNCE_POLL = float(os.environ.get("TSUNAGU_BOUNCE_POLL", "300"))
# How often rules that time alone can change ("no order in 90 days") are re-evaluated, in seconds.
TSUNAGU_SEGMENT_REFRESH = float(os.environ.get("TSUNAGU_SEGMENT_REFRESH", "300"))
