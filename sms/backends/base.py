"""The contract every SMS backend meets, and its one error type."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class SmsError(Exception):
    """A send the provider refused or that did not reach it.

    ``permanent`` tells the caller whether trying again can help: an invalid or
    opted-out number never will, a timeout or a provider outage may. ``code`` is the
    provider's error code as text ("21211", "21610"), or "timeout", "connection",
    "http_500" when the provider gave none. The message never carries a secret.
    """

    def __init__(self, message: str, *, permanent: bool, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code


@runtime_checkable
class SmsBackend(Protocol):
    """Hands one text to an SMS provider."""

    def send(
        self, *, to: str, body: str, sender: str, messaging_service_sid: str = "",
        status_callback: str = "", validity_period: int = 0,
    ) -> str:
        """Send ``body`` to ``to`` (E.164) and return the provider's id for the message.

        ``sender`` is the Blink number; with ``messaging_service_sid`` the provider
        picks the sender from that service instead. ``status_callback`` is the public
        URL the provider reports delivery to. ``validity_period``: seconds the provider may
        hold the message in its queue before dropping it (0: its default; Twilio's is 10
        hours). Raises ``SmsError``.
        """
        ...
