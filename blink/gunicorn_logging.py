"""Logs without activation tokens.

An activation link (/activate/<token>/) stays usable for days, so its path must not land
in a log: gunicorn is started with ``--logger-class blink.gunicorn_logging.AccessLog``,
and Blink's own log handler (settings.LOGGING) has ``ActivationTokenFilter``, for the
lines Django writes itself ("Not Found: /activate/…/", "Internal Server Error: …").
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

_TOKEN_PATH = re.compile(r"/activate/(?!phone/|code/|pin/|done/)[^/?\s]+")


def path_redacted(text: str) -> str:
    """``/activate/<token>/`` written as ``/activate/…/``; other paths unchanged."""
    return _TOKEN_PATH.sub("/activate/…", text)


class AccessLog(Logger):
    """gunicorn's logger, with activation tokens blanked in every access-log field."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any],
              request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "f", "{referer}i"):
            if isinstance(atoms.get(key), str):
                atoms[key] = path_redacted(atoms[key])
        return atoms


class ActivationTokenFilter(logging.Filter):
    """Blanks activation tokens in a record's message before a handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = path_redacted(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
