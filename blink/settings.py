"""Blink's settings, read from the environment (see .env.example for every variable).

With nothing set and DEBUG=true this is the embedded trial: SQLite in var/, tasks
run in-process, SMS and email land in the development outbox. DATABASE_URL and
REDIS_URL switch to PostgreSQL and to Redis (Celery broker and cache).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from blink.env import env_bool, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("BLINK_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", default=False)


def _development_secret(filename: str, make: str) -> str:
    """A secret generated once per checkout for development; never used in production."""
    path = VAR_DIR / filename
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(make, encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def _required_secret(name: str, *, development: str, filename: str) -> str:
    value = env_secret(name)
    if value:
        return value
    if DEBUG:
        return _development_secret(filename, development)
    raise ImproperlyConfigured(
        f"{name} is required when DEBUG is off. Set {name} (or {name}_FILE); "
        "for a development run set DEBUG=true instead."
    )


SECRET_KEY = _required_secret(
    "SECRET_KEY", development=secrets.token_urlsafe(50), filename="secret_key"
)

# Fernet keys for secrets kept in the database (directory passwords, provider
# tokens). The first key encrypts; every key decrypts, which is how keys rotate.
BLINK_ENCRYPTION_KEYS = [
    key.strip()
    for key in _required_secret(
        "BLINK_ENCRYPTION_KEYS",
        development=Fernet.generate_key().decode(),
        filename="encryption_key",
    ).split(",")
    if key.strip()
]
for _key in BLINK_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            "BLINK_ENCRYPTION_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes)."
        ) from None

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required when DEBUG is off.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# The URL Blink's emails and SMS link to, for companies that have not set their own.
# Links are never built from the request's Host header.
BLINK_SITE_URL = env_str("BLINK_SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# The demo directory, the development outbox page and the seeded demo company.
BLINK_DEMO = env_bool("BLINK_DEMO", default=DEBUG)
# How many reverse proxies sit in front of Blink and append to X-Forwarded-For.
BLINK_TRUSTED_PROXIES = env_int("BLINK_TRUSTED_PROXIES", default=0, minimum=0)

if env_bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", default=31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = False
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", default=8 * 3600, minimum=300)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "phonenumber_field",
    "axes",
    "blink",
    "clients",
    "directory",
    "sms",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "clients.middleware.MembershipMiddleware",
    # Axes must come last so it sees the outcome of every login attempt.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "blink.urls"
WSGI_APPLICATION = "blink.wsgi.application"

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
                "clients.context_processors.console",
                "sms.context_processors.dev_outbox",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=60, conn_health_checks=True
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "blink.sqlite3"),
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
# "local" is each process's own memory, for answers that may be a minute old (which
# company owns an SMS number); "default" is shared, Redis when there is one.
LOCAL_CACHE = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
               "LOCATION": "blink-local"}
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "blink",
        },
        "local": LOCAL_CACHE,
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
              "local": LOCAL_CACHE}

# Celery. Without REDIS_URL tasks run in-process, so the trial needs no broker.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# A task is acknowledged only once it finished, so a worker killed mid-task
# hands it to another worker; every task is written to be safe to run twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Directory and SMS calls have their own timeouts well inside these.
CELERY_TASK_SOFT_TIME_LIMIT = 90
CELERY_TASK_TIME_LIMIT = 120
# Redis re-delivers an unacknowledged task after this long; it must exceed the
# longest task, or a slow task would run twice while still running.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fix-up closes the database connection before and after every task unless
# this is set, so each task would open a new PostgreSQL connection (8-10 ms here). Workers
# keep theirs as web processes do instead: blink.celery closes around each task only those
# that broke or outlived CONN_MAX_AGE, and the rest are health-checked before reuse.
CELERY_DB_REUSE_MAX = 2**31
CELERY_BROKER_CONNECTION_TIMEOUT = 4
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
# How often every directory's snapshot is refreshed, in minutes.
BLINK_SYNC_INTERVAL_MINUTES = env_int("BLINK_SYNC_INTERVAL_MINUTES", default=15, minimum=1)
# How often every monitored directory is asked which Blink users are locked, in seconds.
BLINK_LOCKOUT_POLL_SECONDS = env_int("BLINK_LOCKOUT_POLL_SECONDS", default=60, minimum=10)
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "blink.tasks.worker_heartbeat", "schedule": 30.0},
    "directory-sync-all": {
        "task": "directory.tasks.directory_sync_all",
        "schedule": BLINK_SYNC_INTERVAL_MINUTES * 60.0,
    },
    "lockouts-poll-all": {
        "task": "blink.tasks.lockouts_poll_all",
        # A late poll is replaced by the next one rather than queued behind it.
        "schedule": float(BLINK_LOCKOUT_POLL_SECONDS),
        "options": {"expires": float(BLINK_LOCKOUT_POLL_SECONDS)},
    },
    "inbound-requeue": {
        "task": "sms.tasks.inbound_requeue",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "resets-requeue": {
        "task": "blink.tasks.resets_requeue",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "messages-requeue": {
        "task": "sms.tasks.messages_requeue",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console-home"
LOGOUT_REDIRECT_URL = "login"

# Console sign-in throttling: 5 failures for one username from one address
# locks that pair for 15 minutes; a success resets the count.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", default=5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", default=15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "blink.audit.client_ip"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

PHONENUMBER_DB_FORMAT = "E164"
PHONENUMBER_DEFAULT_FORMAT = "E164"

# SMS: sms.backends.outbox.SmsBackend (development), .twilio.SmsBackend, .locmem.SmsBackend.
SMS_BACKEND = env_str("SMS_BACKEND", "sms.backends.outbox.SmsBackend")
# The Blink number for companies that have not set their own.
BLINK_SMS_NUMBER = env_str("BLINK_SMS_NUMBER", "+15005550006")
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env_secret("TWILIO_AUTH_TOKEN")
# Only for pointing the client at a stand-in; production leaves it empty.
TWILIO_API_BASE = env_str("TWILIO_API_BASE")
TWILIO_TIMEOUT = env_int("TWILIO_TIMEOUT", default=10, minimum=1)
# A CA bundle to verify TWILIO_API_BASE with (tests' stand-in); empty: the usual CAs.
TWILIO_CA_BUNDLE = env_str("TWILIO_CA_BUNDLE")
# An HTTP proxy for Blink's own calls out: Twilio, and Entra's sign-in service and Graph.
# Blink's clients ignore HTTPS_PROXY and the other environment variables on purpose (they
# must not swap the CA a connection was given), so a proxy is named here: an http:// URL,
# since TLS runs end to end through its tunnel, checked against the connection's own CA.
BLINK_HTTPS_PROXY = env_str("BLINK_HTTPS_PROXY")
if BLINK_HTTPS_PROXY and not (BLINK_HTTPS_PROXY.startswith("http://")
                              and urlsplit(BLINK_HTTPS_PROXY).hostname):
    raise ImproperlyConfigured(
        "BLINK_HTTPS_PROXY must be a proxy's http:// URL, such as http://proxy.example:3128."
    )
# Error reports hide it (and any setting named *PROXY*): its URL may carry a password.
DEFAULT_EXCEPTION_REPORTER_FILTER = "blink.debug.ErrorReportFilter"
if SMS_BACKEND.endswith("twilio.SmsBackend") and not (TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN):
    raise ImproperlyConfigured(
        "SMS_BACKEND is Twilio: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or _FILE)."
    )
# How long an activation link works.
BLINK_ACTIVATION_HOURS = env_int("BLINK_ACTIVATION_HOURS", default=72, minimum=1)

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "sms.outbox.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", default=25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", default=20, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Blink <blink@localhost>")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"no_tokens": {"()": "blink.gunicorn_logging.ActivationTokenFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["no_tokens"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}
