"""Django settings: every deploy-time value comes from the environment.

See README.md for the list of variables and their defaults.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from collector.redis_client import is_cluster_url
from collector.settings import SettingsError, settings_from_env
from webapp.env import database_from_url, env_bool, env_float
from webapp.metrics.config import metrics_settings

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTOLAN_VAR_DIR", BASE_DIR / "var"))


def private_dir(path: Path) -> Path:
    """``path``, made if missing and readable by its owner only: it holds the
    secret key, the login database (session keys) and the admin password."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Create ``path`` as 0600 from the start (never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = VAR_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        write_private(path, key)
        return key


DEBUG = env_bool("DEBUG", False)
try:
    private_dir(VAR_DIR)
except OSError as exc:  # not ours to change (a shared volume): say so, go on
    logging.getLogger("portolan.settings").warning(
        "cannot make %s private (%s): keep it readable by its owner only", VAR_DIR, exc)
SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip()
    for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",")
    if o.strip()
]

# The values the collector shares with the web app are read by the collector's
# own settings module, so that both sides read them alike.
try:
    COLLECTOR = settings_from_env(os.environ)
except SettingsError as exc:
    raise ImproperlyConfigured(str(exc)) from None
REDIS_URL = COLLECTOR.redis_url
PORTOLAN = {
    "KEY_PREFIX": COLLECTOR.key_prefix,
    "HOST_ID": COLLECTOR.host_id,
    "INTERVAL": COLLECTOR.interval,
    # A collector that has not reported for this long is no longer live.
    "COLLECTOR_TTL": env_float("PORTOLAN_COLLECTOR_TTL", 10.0),
    "NODE_TTL": COLLECTOR.node_ttl,
    "FLOW_TTL": COLLECTOR.flow_ttl,
    "HISTORY_STEP": COLLECTOR.history_step,
    "HISTORY_FINE": COLLECTOR.history_fine,
    "HISTORY_COARSE_STEP": COLLECTOR.history_coarse_step,
    "HISTORY_WINDOW": COLLECTOR.history_window,
    "TRACE_UDP": COLLECTOR.trace_udp,
    # Nodes whose metrics alone moved that the graph builder redraws a
    # second at most (0: all of them, every round).
    "BUILDER_METRIC_NODES": env_float("PORTOLAN_BUILDER_METRIC_NODES", 2000.0),
}
if PORTOLAN["BUILDER_METRIC_NODES"] < 0:
    raise ImproperlyConfigured("PORTOLAN_BUILDER_METRIC_NODES must be 0 or more, "
                               f"not {PORTOLAN['BUILDER_METRIC_NODES']}")
if PORTOLAN["COLLECTOR_TTL"] <= 0:
    raise ImproperlyConfigured(
        f"PORTOLAN_COLLECTOR_TTL must be positive, not {PORTOLAN['COLLECTOR_TTL']}")

# GET /metrics for Prometheus: off (404) unless PORTOLAN_METRICS_TOKEN is set.
PORTOLAN_METRICS = metrics_settings(os.environ)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "webapp.topology",
    "webapp.maps",
    "webapp.anomalies",
    "webapp.metrics",
    "axes",
    "webapp.accounts",  # after axes and auth: its roles hold their permissions
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a throttled login into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.urls"
ASGI_APPLICATION = "webapp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Logins, sessions, API tokens, roles and the login throttle's counts. Unset
# DATABASE_URL: a SQLite file in var/, this process's own. Every web worker
# must share one database (DATABASE_URL=postgres://...) as soon as there are
# several, or a login, a token or a lockout holds on one worker only.
DATABASES = {
    "default": database_from_url(os.environ["DATABASE_URL"])
    if os.environ.get("DATABASE_URL", "").strip() else {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DATABASE_PATH", str(VAR_DIR / "portolan.sqlite3")),
    }
}

# channels_redis speaks to one Redis (or Sentinel), not to a Redis Cluster: with
# a cluster REDIS_URL the channel layer needs its own plain Redis.
CHANNEL_REDIS_URL = os.environ.get("CHANNEL_REDIS_URL", "") or (
    "" if is_cluster_url(REDIS_URL) else REDIS_URL)
if not CHANNEL_REDIS_URL or is_cluster_url(CHANNEL_REDIS_URL):
    raise ImproperlyConfigured(
        "REDIS_URL names a Redis Cluster, which the Channels layer (channels_redis) "
        "cannot use: set CHANNEL_REDIS_URL to one Redis (redis://host:port/db)")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [CHANNEL_REDIS_URL], "prefix": "portolan-channels"},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Login throttling (django-axes): after PORTOLAN_LOGIN_FAILURE_LIMIT failures
# in a row for a user name, or from a client address, logins from it are
# refused for PORTOLAN_LOGIN_COOLOFF_SECONDS; a success resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(env_float("PORTOLAN_LOGIN_FAILURE_LIMIT", 5))
AXES_COOLOFF_TIME = timedelta(seconds=env_float("PORTOLAN_LOGIN_COOLOFF_SECONDS", 900))
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_TIME.total_seconds() <= 0:
    raise ImproperlyConfigured(
        "PORTOLAN_LOGIN_FAILURE_LIMIT and PORTOLAN_LOGIN_COOLOFF_SECONDS must be "
        "positive")
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_LOCKOUT_CALLABLE = "webapp.accounts.views.lockout_response"
AXES_CLIENT_IP_CALLABLE = "webapp.accounts.client_ip.client_ip"
# Behind a proxy: the header it sets to the client's address (its last entry
# is used); empty: the peer address. Never trust one the proxy does not set.
PORTOLAN_CLIENT_IP_HEADER = os.environ.get("PORTOLAN_CLIENT_IP_HEADER", "").strip()

# Sessions end after this long without a request (each request renews them).
SESSION_COOKIE_AGE = int(env_float("PORTOLAN_SESSION_IDLE_SECONDS", 8 * 3600))
SESSION_SAVE_EVERY_REQUEST = True
if SESSION_COOKIE_AGE <= 0:
    raise ImproperlyConfigured("PORTOLAN_SESSION_IDLE_SECONDS must be positive")

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "collected-static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
# No inline script or style, no eval; the socket is 'self' too (CSP 3 matches
# ws:/wss: of the page's own host). PORTOLAN_CSP_REPORT_URI: where browsers
# report violations (none by default).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        **({"report-uri": [os.environ["PORTOLAN_CSP_REPORT_URI"]]}
           if os.environ.get("PORTOLAN_CSP_REPORT_URI") else {}),
    },
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": COLLECTOR.log_level},
}
