"""Access logs of a real gunicorn never hold an activation token."""

from __future__ import annotations

import io
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from blink.gunicorn_logging import ActivationTokenFilter, path_redacted

ROOT = Path(__file__).resolve().parents[2]


def test_tokens_are_blanked_and_other_paths_kept():
    assert path_redacted("GET /activate/AbC-123_x/ HTTP/1.1") == "GET /activate/…/ HTTP/1.1"
    for path in ("/activate/phone/", "/activate/code/", "/activate/done/", "/clients/3/"):
        assert path_redacted(path) == path


def test_gunicorn_access_log_holds_no_token(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "access.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "blink.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1",
         "--access-logfile", str(log), "--logger-class",
         "blink.gunicorn_logging.AccessLog"],
        cwd=ROOT, env={"DJANGO_SETTINGS_MODULE": "tests.settings", "BLINK_VAR_DIR": str(tmp_path),
                       "PATH": "/usr/bin:/bin"},
    )
    token = "SuperSecretToken-12345"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/activate/{token}/", timeout=2)
            except urllib.error.HTTPError:
                break  # answered (404: no such link) — it was served and logged
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=10)
    text = log.read_text()
    assert "/activate/…/" in text
    assert token not in text


def test_djangos_own_log_lines_hold_no_token(client, db):
    """Django logs every 404 and 500 with its path: "Not Found: /activate/<token>/"."""
    [handler] = [h for h in logging.getLogger().handlers
                 if any(isinstance(f, ActivationTokenFilter) for f in h.filters)]
    assert isinstance(handler, logging.StreamHandler)
    written = io.StringIO()
    previous = handler.setStream(written)
    try:
        response = client.get("/activate/Dead-Token_4f9a2c/")
    finally:
        handler.setStream(previous)

    assert response.status_code == 404
    assert "Not Found: /activate/…/" in written.getvalue()
    assert "Dead-Token_4f9a2c" not in written.getvalue()
