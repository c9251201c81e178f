"""Settings for the test run: Blink's own, with test-only secrets and fast hashing."""

from __future__ import annotations

import os

from cryptography.fernet import Fernet

# Test-only values; a real deployment supplies its own through the environment.
os.environ.setdefault("SECRET_KEY", "tests-only-" + "x" * 40)
os.environ.setdefault("BLINK_ENCRYPTION_KEYS", Fernet.generate_key().decode())
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")

from blink.env import env_bool
from blink.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SECURE_SSL_REDIRECT = False
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Serve static files from the source folders; the tests never run collectstatic.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

# The test process runs tasks in-process and keeps its cache to itself, even when
# REDIS_URL is set (as on CI); tests that need a real worker switch to it per test
# (tests/integration/conftest.py), and that worker loads these settings with
# BLINK_TEST_WORKER=true so it keeps the real broker.
if not env_bool("BLINK_TEST_WORKER", default=False):
    CELERY_TASK_ALWAYS_EAGER = True
    # What phones received is sms.backends.locmem.outbox (the ``sms_outbox`` fixture).
    SMS_BACKEND = "sms.backends.locmem.SmsBackend"
    CELERY_BROKER_URL = "memory://"
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
              "local": LOCAL_CACHE}  # noqa: F405
