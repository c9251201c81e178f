"""Start-up refuses bad or missing configuration, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet
from django.views.debug import ExceptionReporter

ROOT = Path(__file__).resolve().parents[2]
KEEP = ("PATH", "HOME", "LANG", "SYSTEMROOT")
PROXY_WITH_PASSWORD = "http://blink:proxy-pa55word@proxy.example:3128"


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Load Blink's real settings in a fresh interpreter with exactly ``env``."""
    clean = {name: os.environ[name] for name in KEEP if name in os.environ}
    clean.update({"BLINK_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "blink.settings"})
    clean.update(env)
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True,
        timeout=60, check=False,
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-production-secret-key-that-is-long-enough-0123456789",
    "BLINK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "blink.example.com",
}


def test_production_settings_start(tmp_path):
    result = start(tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_missing_secret_key_stops_start_up(tmp_path):
    env = dict(PRODUCTION)
    del env["SECRET_KEY"]
    result = start(tmp_path, **env)
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_missing_encryption_keys_stop_start_up(tmp_path):
    env = dict(PRODUCTION)
    del env["BLINK_ENCRYPTION_KEYS"]
    result = start(tmp_path, **env)
    assert "BLINK_ENCRYPTION_KEYS is required" in result.stderr


def test_malformed_encryption_key_stops_start_up(tmp_path):
    result = start(tmp_path, **{**PRODUCTION, "BLINK_ENCRYPTION_KEYS": "not-a-key"})
    assert "not a Fernet key" in result.stderr


def test_missing_allowed_hosts_stops_start_up(tmp_path):
    env = dict(PRODUCTION)
    del env["ALLOWED_HOSTS"]
    result = start(tmp_path, **env)
    assert "ALLOWED_HOSTS is required" in result.stderr


def test_bad_boolean_stops_start_up(tmp_path):
    result = start(tmp_path, **{**PRODUCTION, "DEBUG": "yes please"})
    assert result.returncode != 0
    assert "DEBUG='yes please' is not a boolean" in result.stderr


def test_a_proxy_must_be_a_url(tmp_path):
    for wrong in ("proxy.example:3128", "http://:3128", "https://proxy.example:3128"):
        result = start(tmp_path, **{**PRODUCTION, "BLINK_HTTPS_PROXY": wrong})
        assert result.returncode != 0
        assert "BLINK_HTTPS_PROXY must be a proxy's http:// URL" in result.stderr
    assert start(tmp_path, **{**PRODUCTION, "BLINK_HTTPS_PROXY": "http://proxy.example:3128"}
                 ).returncode == 0


def _broken(proxy: str = PROXY_WITH_PASSWORD) -> None:
    # Locals such as these, in Blink's code or a library's, reach the report's frames.
    session = {"proxies": {"https": proxy}, "timeout": 10}
    bind_password = proxy
    raise RuntimeError(f"something broke ({len(session)}, {len(bind_password)})")


def test_error_reports_hide_a_proxy_password(rf, settings):
    """The DEBUG page and emailed reports list the settings and the request's environment
    (runserver copies the process's into it); a proxy's URL may carry its password."""
    settings.BLINK_HTTPS_PROXY = PROXY_WITH_PASSWORD
    request = rf.get("/", HTTPS_PROXY=PROXY_WITH_PASSWORD)
    try:
        _broken()
    except RuntimeError as error:
        # From _broken down: this frame's source would show the assertion below.
        assert error.__traceback__ is not None
        report = ExceptionReporter(request, type(error), error, error.__traceback__.tb_next)
    page = report.get_traceback_html()

    assert "something broke" in page and "BLINK_HTTPS_PROXY" in page
    assert "<td>HTTPS_PROXY</td>" in page  # the request's variable, shown hidden
    assert "session" in page and "timeout" in page and "bind_password" in page
    assert "proxy-pa55word" not in page


def test_development_generates_and_keeps_local_keys(tmp_path):
    first = start(tmp_path, DEBUG="true")
    assert first.returncode == 0, first.stderr
    key = (tmp_path / "secret_key").read_text()
    assert (tmp_path / "encryption_key").stat().st_mode & 0o777 == 0o600
    start(tmp_path, DEBUG="true")
    assert (tmp_path / "secret_key").read_text() == key


def test_production_cookies_are_secure_and_hsts_is_on(tmp_path):
    clean = {name: os.environ[name] for name in KEEP if name in os.environ}
    clean.update(PRODUCTION, BLINK_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="blink.settings",
                 SECURE_PROXY_SSL_HEADER="true")
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_PROXY_SSL_HEADER)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.split() == [
        "True", "True", "31536000", "('HTTP_X_FORWARDED_PROTO',", "'https')"
    ]


def test_beat_runs_each_sweep_every_minute_as_a_registered_task() -> None:
    """A renamed or misspelt task in the schedule would make beat queue tasks no worker
    knows; the three sweeps for lost work run every minute."""
    from django.conf import settings

    from blink.celery import app

    app.loader.import_default_modules()  # what a worker does at start: find the tasks
    schedule = settings.CELERY_BEAT_SCHEDULE
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, f"{name}: {entry['task']} is not a task"
    for sweep, task in (("inbound-requeue", "sms.tasks.inbound_requeue"),
                        ("messages-requeue", "sms.tasks.messages_requeue"),
                        ("resets-requeue", "blink.tasks.resets_requeue")):
        assert (schedule[sweep]["task"], schedule[sweep]["schedule"]) == (task, 60.0)
