"""A local stand-in for Twilio's Messages API (2010-04-01), and Twilio's side of its webhooks.

It speaks HTTPS on 127.0.0.1 with its own CA (written to a temporary file), so the real
``twilio`` library and ``requests`` run against it unchanged once Blink's client is pointed
at ``origin`` (settings.TWILIO_API_BASE) and trusts ``ca_bundle`` (settings.TWILIO_CA_BUNDLE).

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP Basic auth (account SID
and auth token) and the form fields To, From or MessagingServiceSid, Body, StatusCallback
answers 201 with Twilio's Message resource, or an error in Twilio's shape
(``{"code", "message", "more_info", "status"}``). Twilio's magic test numbers answer as they
do with Twilio's test credentials: +15005550001 → 21211, +15005550002 → 21612,
+15005550003 → 21408, +15005550004 → 21610, +15005550009 → 21614; ``knobs.refusals`` adds
more. Knobs also fail the next N requests (500 by default) and stall the next N requests
(hang, then hang up without answering: a client with a shorter timeout sees a timeout).

Every attempt is recorded (``attempts``) and every accepted message kept (``accepted``), with
its text: the stand-in is the user's phone, so tests read codes from it.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import os
import re
import secrets
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from twilio.request_validator import RequestValidator

from tests.fakes.tls import TLSServer, generate_ca, pem, server_certificate

API_VERSION = "2010-04-01"
_MESSAGES_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages\.json$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MG = re.compile(r"^MG[0-9a-f]{32}$")

# Twilio's magic "To" numbers for test credentials and what each answers.
MAGIC_NUMBERS = {
    "+15005550001": 21211,
    "+15005550002": 21612,
    "+15005550003": 21408,
    "+15005550004": 21610,
    "+15005550009": 21614,
}

# Error code -> (HTTP status, Twilio's message). {to} and {from_} are filled in.
ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource {path} was not found"),
    20004: (405, "Method not allowed"),
    20500: (500, "An internal server error has occurred"),
    20503: (503, "Service unavailable"),
    20429: (429, "Too Many Requests"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21408: (400, "Permission to send an SMS has not been enabled for the region indicated by "
                 "the 'To' number: {to}."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21609: (400, "Invalid StatusCallback url"),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21612: (400, "The 'To' phone number: {to}, is not currently reachable using the 'From' "
                 "phone number: {from_} via SMS."),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21624: (400, "Validity period can only be set to integers between 1 and 36,000 seconds "
                 "(10 hours max)."),
    21701: (400, "The Messaging Service Sid {mss} is invalid."),
}
_STATUS_CODES = {500: 20500, 503: 20503, 429: 20429}


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _rfc2822() -> str:
    return email.utils.formatdate(usegmt=False).replace("-0000", "+0000")


@dataclass
class Attempt:
    """One Messages request as the stand-in saw it (the auth token is never kept)."""

    to: str
    from_: str
    body: str
    messaging_service_sid: str
    status_callback: str
    # The HTTP status answered; 0 when the stand-in hung up without answering.
    status: int = 0
    code: int | None = None


@dataclass
class AcceptedMessage:
    """A message Twilio took: what the phone at ``to`` receives."""

    sid: str
    to: str
    from_: str
    body: str
    messaging_service_sid: str
    status_callback: str
    # Seconds Twilio may keep it queued (ValidityPeriod); 0: Twilio's default, 10 hours.
    validity_period: int = 0


@dataclass
class Knobs:
    """Switches a test flips to make the stand-in answer the way Twilio sometimes does."""

    # "To" number -> Twilio error code it answers with.
    refusals: dict[str, int] = field(default_factory=lambda: dict(MAGIC_NUMBERS))
    # HTTP statuses for the next requests, consumed in order (500, 503, 429).
    failures: list[int] = field(default_factory=list)
    # Seconds the next requests hang before the stand-in hangs up, consumed in order.
    stalls: list[float] = field(default_factory=list)


class FakeTwilio:
    """Twilio's REST API for one account, on https://127.0.0.1:<port>."""

    def __init__(self) -> None:
        self.account_sid = _sid("AC")
        self.auth_token = secrets.token_hex(16)
        self.knobs = Knobs()
        self.attempts: list[Attempt] = []
        self.accepted: list[AcceptedMessage] = []
        self.lock = threading.RLock()
        self._tempdir = tempfile.TemporaryDirectory(prefix="fake-twilio-")
        ca_key, ca_cert = generate_ca("Blink fake Twilio CA")
        key, cert = server_certificate(ca_key, ca_cert)
        self.ca_bundle = os.path.join(self._tempdir.name, "ca.pem")
        with open(self.ca_bundle, "wb") as fh:
            fh.write(pem(ca_cert))
        cert_file = os.path.join(self._tempdir.name, "server.pem")
        with open(cert_file, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
            fh.write(pem(cert))
        self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ssl_context.load_cert_chain(cert_file)
        self._server: TLSServer[FakeTwilio] | None = None
        self.port = 0

    # -- lifecycle

    def start(self) -> FakeTwilio:
        self._server = TLSServer(("127.0.0.1", 0), _Handler, self, self.ssl_context)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="fake-twilio",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._tempdir.cleanup()

    def reset(self) -> None:
        """Forget knobs, attempts and accepted messages (between tests)."""
        with self.lock:
            self.knobs = Knobs()
            self.attempts = []
            self.accepted = []

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- knobs

    def refuse(self, number: str, code: int) -> None:
        """Answer every message to ``number`` with Twilio error ``code`` (21211, 21610, …)."""
        with self.lock:
            self.knobs.refusals[number] = code

    def fail_next(self, count: int, *, status: int = 500) -> None:
        """Answer the next ``count`` requests with ``status`` in Twilio's error shape."""
        with self.lock:
            self.knobs.failures.extend([status] * count)

    def stall_next(self, count: int = 1, *, seconds: float) -> None:
        """Hang the next ``count`` requests for ``seconds``, then hang up unanswered."""
        with self.lock:
            self.knobs.stalls.extend([seconds] * count)

    # -- what tests read

    def messages_to(self, phone: str) -> list[AcceptedMessage]:
        with self.lock:
            return [m for m in self.accepted if m.to == phone]

    def code_for(self, phone: str) -> str:
        """The 6-digit code in the latest message the phone received (as the user reads it)."""
        received = self.messages_to(phone)
        assert received, f"no message reached {phone}"
        match = re.search(r"\b(\d{6})\b", received[-1].body)
        assert match, "the latest message carries no code"
        return match.group(1)

    # -- Twilio's side of the webhooks

    def sign(self, url: str, params: dict[str, str]) -> str:
        """X-Twilio-Signature for a POST of ``params`` to ``url``, as Twilio computes it."""
        return str(RequestValidator(self.auth_token).compute_signature(url, params))

    def status_callback(self, sid: str, status: str, *, error_code: int | None = None
                        ) -> tuple[str, dict[str, str], str]:
        """The status callback Twilio would POST for an accepted message:
        (its StatusCallback URL, the form fields, the X-Twilio-Signature)."""
        with self.lock:
            message = next(m for m in self.accepted if m.sid == sid)
        params = {
            "AccountSid": self.account_sid, "ApiVersion": API_VERSION,
            "MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
            "From": message.from_, "To": message.to,
        }
        if message.messaging_service_sid:
            params["MessagingServiceSid"] = message.messaging_service_sid
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return message.status_callback, params, self.sign(message.status_callback, params)

    def post_status_callback(self, sid: str, status: str, *, error_code: int | None = None,
                             timeout: float = 10) -> requests.Response:
        """Deliver the status callback to its URL (a live server), signed."""
        url, params, signature = self.status_callback(sid, status, error_code=error_code)
        with requests.Session() as session:
            session.trust_env = False
            return session.post(url, data=params, timeout=timeout,
                                headers={"X-Twilio-Signature": signature})

    def inbound(self, *, to: str, from_: str, body: str, num_media: int = 0,
                sid: str | None = None) -> dict[str, str]:
        """The form fields of Twilio's incoming-message webhook (sign them with ``sign``)."""
        sid = sid or _sid("MM" if num_media else "SM")
        params = {
            "ToCountry": "US", "ToState": "", "SmsMessageSid": sid, "NumMedia": str(num_media),
            "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "", "SmsStatus": "received",
            "FromCity": "", "Body": body, "FromCountry": "US", "To": to, "ToZip": "",
            "NumSegments": "1", "MessageSid": sid, "AccountSid": self.account_sid,
            "From": from_, "ApiVersion": API_VERSION,
        }
        for index in range(num_media):
            params[f"MediaContentType{index}"] = "image/jpeg"
            params[f"MediaUrl{index}"] = (f"https://api.twilio.com/{API_VERSION}/Accounts/"
                                          f"{self.account_sid}/Messages/{sid}/Media/"
                                          f"{_sid('ME')}")
        return params


class _Refusal(Exception):
    def __init__(self, code: int, **words: str) -> None:
        status, message = ERRORS[code]
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {
            "code": code,
            "message": message.format(**{"to": "", "from_": "", "path": "", "mss": "", **words}),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        if code == 20003:
            self.body["detail"] = "Your AccountSid or AuthToken was incorrect."


class _Dropped(Exception):
    """Hang up without an answer."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: TLSServer[FakeTwilio]
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeTwilio:
        return self.server.fake

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        form = {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        attempt = Attempt(to=form.get("To", ""), from_=form.get("From", ""),
                          body=form.get("Body", ""),
                          messaging_service_sid=form.get("MessagingServiceSid", ""),
                          status_callback=form.get("StatusCallback", ""))
        with self.fake.lock:
            self.fake.attempts.append(attempt)
        try:
            status, body = self._messages(method, form)
        except _Refusal as refusal:
            status, body = refusal.status, refusal.body
            attempt.code = refusal.body["code"]
        except _Dropped:
            self.close_connection = True
            return
        attempt.status = status
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Twilio-Request-Id", _sid("RQ"))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(payload)

    def _messages(self, method: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        fake = self.fake
        path = urlsplit(self.path).path
        with fake.lock:
            stall = fake.knobs.stalls.pop(0) if fake.knobs.stalls else None
            failure = fake.knobs.failures.pop(0) if fake.knobs.failures else None
        if stall is not None:
            time.sleep(stall)
            raise _Dropped
        if failure is not None:
            raise _Refusal(_STATUS_CODES.get(failure, 20500))
        match = _MESSAGES_PATH.match(path)
        if not match:
            raise _Refusal(20404, path=path)
        self._authenticate(match["account"])
        if method != "POST":
            raise _Refusal(20004)
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        mss, callback = form.get("MessagingServiceSid", ""), form.get("StatusCallback", "")
        if not to:
            raise _Refusal(21604)
        if not from_ and not mss:
            raise _Refusal(21603)
        if mss and not _MG.match(mss):
            raise _Refusal(21701, mss=mss)
        if not body:
            raise _Refusal(21602)
        if len(body) > 1600:
            raise _Refusal(21617)
        if callback and urlsplit(callback).scheme not in ("http", "https"):
            raise _Refusal(21609)
        validity = form.get("ValidityPeriod", "")
        if validity and not (validity.isdigit() and 1 <= int(validity) <= 36_000):
            raise _Refusal(21624)
        if not _E164.match(to):
            raise _Refusal(21211, to=to)
        with fake.lock:
            refusal = fake.knobs.refusals.get(to)
        if refusal is not None:
            raise _Refusal(refusal, to=to, from_=from_)
        sid = _sid("SM")
        with fake.lock:
            fake.accepted.append(AcceptedMessage(sid=sid, to=to, from_=from_, body=body,
                                                 messaging_service_sid=mss,
                                                 status_callback=callback,
                                                 validity_period=int(validity or 0)))
        now = _rfc2822()
        uri = f"/{API_VERSION}/Accounts/{fake.account_sid}/Messages/{sid}"
        return 201, {
            "account_sid": fake.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_ or None,
            "messaging_service_sid": mss or None,
            "num_media": "0",
            "num_segments": "0" if mss and not from_ else "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if mss and not from_ else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }

    def _authenticate(self, account: str) -> None:
        header = self.headers.get("Authorization") or ""
        fake = self.fake
        try:
            scheme, _, encoded = header.partition(" ")
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            raise _Refusal(20003) from None
        if (scheme != "Basic" or user != fake.account_sid or account != fake.account_sid
                or not secrets.compare_digest(password, fake.auth_token)):
            raise _Refusal(20003)
