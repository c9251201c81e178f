"""Twilio Programmable Messaging through the official ``twilio`` library.

The library's default HTTP client reads proxy and CA settings from the environment and
has no timeout. Blink's own client has a timeout (``TWILIO_TIMEOUT``), ignores the
environment, and — for tests only — sends to ``TWILIO_API_BASE`` instead of
https://api.twilio.com, trusting ``TWILIO_CA_BUNDLE``.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from sms.backends.base import SmsError

log = logging.getLogger(__name__)

# Refusals worth a sentence of their own; anything else shows Twilio's message.
REFUSALS = {
    "20003": "Twilio refused Blink's credentials: check TWILIO_ACCOUNT_SID and "
             "TWILIO_AUTH_TOKEN.",
    "21211": "The number is not a valid mobile number. Check it with the user and save "
             "the right one.",
    "21408": "Twilio is not allowed to text this country: turn it on in Twilio's "
             "Messaging geographic permissions.",
    "21602": "The message was empty, so Twilio did not send it.",
    "21606": "The Blink number is not an SMS-capable number of this Twilio account: check "
             "the company's SMS number.",
    "21610": "The user texted STOP to this number, so Blink cannot text them until they "
             "text START.",
    "21612": "Twilio cannot text this number from the Blink number. Try another number.",
    "21614": "The number is not a mobile number, so it cannot receive SMS. Ask the user for "
             "a mobile number.",
    "21617": "The message was longer than Twilio's 1,600 characters.",
    "21659": "The Blink number is not a Twilio number of this account: check the company's "
             "SMS number.",
}

_PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")


def _masked(text: str) -> str:
    """Twilio's messages quote the number; admins and logs see only its last four digits."""
    from blink.models import phone_mask

    return _PHONE.sub(lambda match: phone_mask(match.group()), text)


class BlinkHttpClient(HttpClient):
    """The HTTP client the twilio library calls: one pooled session, a timeout, no
    environment (proxy or CA variables) but the configured proxy, and the stand-in's
    address in tests."""

    def __init__(self, *, timeout: float, api_base: str = "", ca_bundle: str = "",
                 proxy: str = "") -> None:
        super().__init__(logger=log, is_async=False, timeout=timeout)
        self.session = requests.Session()
        # REQUESTS_CA_BUNDLE and proxy variables must not decide where messages go.
        self.session.trust_env = False
        if proxy:
            self.session.proxies = {"http": proxy, "https": proxy}
        self.api_base = api_base.rstrip("/")
        self.verify: str | bool = ca_bundle or True

    def _address(self, url: str) -> str:
        parts = urlsplit(url)
        if not self.api_base or not (parts.hostname or "").endswith("twilio.com"):
            return url
        base = urlsplit(self.api_base)
        return urlunsplit((base.scheme, base.netloc, base.path + parts.path, parts.query, ""))

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request to Twilio; network failures raise ``requests`` exceptions."""
        url = self._address(uri)
        # Only the method and path are logged: the body holds the text, the auth the token.
        log.debug("twilio %s %s", method, urlsplit(url).path)
        response = self.session.request(
            method.upper(), url, params=params, data=data,  # type: ignore[arg-type]
            headers=headers, auth=auth,
            timeout=timeout or self.timeout, allow_redirects=allow_redirects,
            verify=self.verify,
        )
        log.debug("twilio answered %s", response.status_code)
        return Response(int(response.status_code), response.text, response.headers)


class SmsBackend:
    """Sends through Twilio's Messages API; the client is built on the first send."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._lock = threading.Lock()

    def client(self) -> Client:
        """The twilio REST client, created once per backend (and so once per process)."""
        with self._lock:
            if self._client is None:
                http_client = BlinkHttpClient(
                    timeout=settings.TWILIO_TIMEOUT,
                    api_base=settings.TWILIO_API_BASE,
                    ca_bundle=settings.TWILIO_CA_BUNDLE,
                    proxy=settings.BLINK_HTTPS_PROXY,
                )
                self._client = Client(
                    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN,
                    http_client=http_client,
                )
            return self._client

    def send(
        self, *, to: str, body: str, sender: str, messaging_service_sid: str = "",
        status_callback: str = "", validity_period: int = 0,
    ) -> str:
        """Create a Message resource and return its MessageSid; raises ``SmsError``."""
        options: dict[str, str] = {}
        if messaging_service_sid:
            options["messaging_service_sid"] = messaging_service_sid
        else:
            options["from_"] = sender
        if status_callback:
            options["status_callback"] = status_callback
        if validity_period:
            options["validity_period"] = str(validity_period)
        try:
            message = self.client().messages.create(to=to, body=body, **options)
        except TwilioRestException as error:
            raise _rest_error(error.status, error.code, str(error.msg)) from None
        except TwilioServiceException as error:
            raise _rest_error(error.status, error.code, error.detail or error.title) from None
        except requests.Timeout:
            raise SmsError(
                f"Twilio did not answer within {settings.TWILIO_TIMEOUT} s; Blink tries again.",
                permanent=False, code="timeout",
            ) from None
        except requests.RequestException as error:
            raise SmsError(
                f"Blink could not reach Twilio ({type(error).__name__}); Blink tries again.",
                permanent=False, code="connection",
            ) from None
        return str(message.sid)


def _rest_error(status: int, code: int | None, message: str) -> SmsError:
    """Twilio's 4xx answers are final; 429 and 5xx are worth another try."""
    text = f"{code}" if code and code != status else f"http_{status}"
    temporary = status == 429 or status >= 500
    # The library prefixes its own words ("Unable to create record: "); keep Twilio's.
    said = _masked(message.split(": ", 1)[-1]).strip()
    sentence = REFUSALS.get(text) or (
        f"Twilio is unavailable ({said or status}); Blink tries again." if temporary
        else f"Twilio refused the message: {said or status} (error {text})."
    )
    return SmsError(sentence[:300], permanent=not temporary, code=text)
