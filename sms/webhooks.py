"""Twilio's webhooks: delivery reports (status callbacks) and incoming texts.

Each request must carry Twilio's X-Twilio-Signature for the public URL Blink gave Twilio —
built from the company's site URL (or BLINK_SITE_URL), never from the Host header.
Anything else is refused with 403 and, when the company is known, an audit entry (the first
in each minute per company and endpoint; every refusal is logged).
"""

from __future__ import annotations

import logging

from django import forms
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST
from phonenumber_field.phonenumber import PhoneNumber
from phonenumbers import NumberParseException
from twilio.request_validator import RequestValidator

from blink.audit import Actor, audit_record, client_ip
from blink.models import AuditEvent
from clients.forms import OneValueForm
from clients.models import Company
from sms.inbound import InboundUnavailable, inbound_company, inbound_queue
from sms.models import Message
from sms.services import message_status_update

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
SID_PATTERN = r"^(SM|MM)[0-9a-fA-F]{32}\Z"
TWILIO_STATUSES = ("accepted", "scheduled", "canceled", "queued", "sending", "sent", "failed",
                   "delivered", "undelivered", "receiving", "received", "read",
                   "partially_delivered")


def _twiml() -> HttpResponse:
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def _single(data: QueryDict, name: str) -> str:
    values = data.getlist(name)
    return values[0] if len(values) == 1 and len(values[0]) <= 64 else ""


def _refusal(request: HttpRequest, company: Company | None) -> str:
    """Why this request is not from Twilio, or "" when its signature is good."""
    token = settings.TWILIO_AUTH_TOKEN
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token:
        return "Twilio webhooks are off: TWILIO_AUTH_TOKEN is not set"
    if not signature:
        return "no X-Twilio-Signature"
    site = company.site_url if company is not None else settings.BLINK_SITE_URL
    url = site.rstrip("/") + request.get_full_path()
    if RequestValidator(token).validate(url, request.POST, signature):
        return ""
    return "X-Twilio-Signature does not match this request"


# A flood of forged webhooks must not become a flood of audit rows: the audit log gets the
# first refusal per company and endpoint in this many seconds; the log gets every one.
REFUSALS_AUDITED_EVERY = 60


def _first_refusal(company: Company, endpoint: str) -> bool:
    try:
        return bool(cache.add(f"webhook-refused:{company.pk}:{endpoint}", 1,
                              REFUSALS_AUDITED_EVERY))
    except Exception:  # no cache: audit it rather than lose it
        log.warning("could not check the refusal audit cap; auditing this one")
        return True


def _refused(request: HttpRequest, company: Company | None, *, endpoint: str,
             reason: str) -> HttpResponse:
    sid = _single(request.POST, "MessageSid")
    log.warning("refused a Twilio %s webhook from %s for %s: %s", endpoint, client_ip(request),
                company.pk if company else "no company", reason)
    if company is not None and _first_refusal(company, endpoint):
        audit_record(
            company=company, actor=Actor(label="Twilio webhook", ip=client_ip(request)),
            action="sms.webhook_refused", target=f"{endpoint} webhook",
            result=AuditEvent.Result.REFUSED,
            detail={"reason": reason, "message_sid": sid[:34] if sid.isalnum() else ""},
        )
    return HttpResponse("Forbidden", status=403, content_type="text/plain")


def _bad_request(form: forms.Form, endpoint: str) -> HttpResponse:
    log.warning("malformed Twilio %s webhook: %s", endpoint, ", ".join(sorted(form.errors)))
    return HttpResponse("Bad request", status=400, content_type="text/plain")


class StatusCallbackForm(OneValueForm):
    MessageSid = forms.RegexField(regex=SID_PATTERN)
    MessageStatus = forms.ChoiceField(choices=[(s, s) for s in TWILIO_STATUSES])
    ErrorCode = forms.RegexField(regex=r"^\d{1,6}\Z", required=False)


class InboundForm(OneValueForm):
    MessageSid = forms.RegexField(regex=SID_PATTERN)
    From = forms.CharField(max_length=32)
    To = forms.CharField(max_length=32)
    Body = forms.CharField(max_length=1600, required=False, strip=False)
    NumMedia = forms.IntegerField(min_value=0, max_value=10, required=False)
    MessagingServiceSid = forms.RegexField(regex=r"^MG[0-9a-fA-F]{32}\Z", required=False)

    def clean_From(self) -> str:
        text: str = self.cleaned_data["From"]
        try:
            phone = PhoneNumber.from_string(text) \
                if text.startswith("+") and text.isascii() else None
        except NumberParseException:
            phone = None
        if phone is None or not phone.is_valid():
            raise forms.ValidationError("Expected an E.164 phone number.")
        return phone.as_e164


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    """Twilio's status callback for a message Blink sent: delivered, undelivered, failed."""
    sid = _single(request.POST, "MessageSid")
    message = (
        Message.objects.select_related("company")
        .filter(provider_id=sid, direction=Message.Direction.OUTBOUND).first()
        if sid else None
    )
    company = message.company if message is not None else None
    reason = _refusal(request, company)
    if reason:
        return _refused(request, company, endpoint="status", reason=reason)
    form = StatusCallbackForm(request.POST)
    if not form.is_valid():
        return _bad_request(form, "status")
    if message is None:
        log.info("status callback for a message Blink does not know (%s)", sid)
        return HttpResponse(status=204)
    message_status_update(message=message, status=form.cleaned_data["MessageStatus"],
                          error_code=form.cleaned_data["ErrorCode"])
    return HttpResponse(status=204)


# "RESET 1234": the text is kept out of error reports, as posted and as a local, here and
# in the frames below (the form's cleaning holds it too).
@sensitive_variables()
@csrf_exempt
@require_POST
@sensitive_post_parameters("Body")
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    """A text to a Blink number. Answers empty TwiML at once; replies go out as messages."""
    company = inbound_company(to=_single(request.POST, "To"),
                              messaging_service_sid=_single(request.POST, "MessagingServiceSid"))
    reason = _refusal(request, company)
    if reason:
        return _refused(request, company, endpoint="inbound", reason=reason)
    form = InboundForm(request.POST)
    if not form.is_valid():
        return _bad_request(form, "inbound")
    data = form.cleaned_data
    if company is None:
        log.warning("inbound SMS %s to a number no single company owns; give each company "
                    "its own SMS number in General settings", data["MessageSid"])
        return _twiml()
    try:
        inbound_queue(company=company, phone=data["From"], blink_number=data["To"],
                      body=data["Body"], provider_id=data["MessageSid"])
    except InboundUnavailable:
        # The text waits in the database for the broker (see inbound_queue); the error
        # shows in Twilio's console, and a delivery again, if the URL asks for retries,
        # acts on the waiting text once.
        return HttpResponse("Blink is busy; try again shortly.", status=503,
                            content_type="text/plain", headers={"Retry-After": "30"})
    return _twiml()
