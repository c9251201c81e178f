"""The development outbox: every email and SMS Blink 'sent', and a phone to text back with.

Only when DEBUG or the demo is on, and only for owners and admins. The outbox keeps the
real text of what it caught (codes included) — that is its purpose — so it never exists
in production.
"""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from phonenumber_field.phonenumber import PhoneNumber
from phonenumbers import NumberParseException

from blink.models import phone_mask
from clients.forms import OneValueForm
from clients.permissions import ConsoleRequest, console_view
from directory.demo import demo_sign_in
from sms.inbound import InboundUnavailable, inbound_queue
from sms.models import Message, OutboxEmail, OutboxSms
from sms.services import company_sms_number

SHOWN = 200


class PhoneReplyForm(OneValueForm):
    phone = forms.CharField(max_length=32, label="From number")
    text = forms.CharField(max_length=1600, required=False, strip=False, label="Text",
                           widget=forms.TextInput(attrs={"placeholder": "RESET"}))

    def __init__(self, *args: Any, country: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.country = country

    def clean_phone(self) -> str:
        text: str = self.cleaned_data["phone"]
        try:
            phone = PhoneNumber.from_string(text, region=self.country) if text.isascii() \
                else None
        except NumberParseException:
            phone = None
        if phone is None or not phone.is_valid():
            raise forms.ValidationError("Enter a phone number, e.g. +15551234567.")
        return str(phone)


class DemoSignInForm(OneValueForm):
    username = forms.CharField(max_length=64, label="User name")
    password = forms.CharField(max_length=256, strip=False, label="Password",
                               widget=forms.PasswordInput(render_value=False))


def _outbox_on() -> None:
    if not (settings.DEBUG or settings.BLINK_DEMO):
        raise Http404("The development outbox is off.")


def _page(request: ConsoleRequest, form: PhoneReplyForm, status: int = 200) -> HttpResponse:
    company = request.membership.company
    texted = Message.objects.filter(company=company, direction=Message.Direction.INBOUND)
    return render(request, "sms/outbox.html", {
        "emails": OutboxEmail.objects.all()[:SHOWN],
        "texts": OutboxSms.objects.all()[:SHOWN],
        "texted": texted[:SHOWN],
        "form": form,
        "signin_form": DemoSignInForm(),
        "blink_number": company_sms_number(company),
        "section": "outbox",
    }, status=status)


@never_cache  # it shows codes and temporary passwords
@console_view(write=True)
def dev_outbox(request: ConsoleRequest) -> HttpResponse:
    """Every caught email and SMS, newest first, with a box to text Blink as a phone."""
    _outbox_on()
    company = request.membership.company
    return _page(request, PhoneReplyForm(country=company.default_country))


@require_POST
@sensitive_post_parameters("text")
@console_view(write=True)
def dev_outbox_reply(request: ConsoleRequest) -> HttpResponse:
    """Text the company's Blink number as a phone, through the webhook's own inbound path."""
    _outbox_on()
    company = request.membership.company
    form = PhoneReplyForm(request.POST, country=company.default_country)
    if not form.is_valid():
        return _page(request, form, status=400)
    phone = form.cleaned_data["phone"]
    try:
        inbound_queue(
            company=company, phone=phone, blink_number=company_sms_number(company),
            body=form.cleaned_data["text"], provider_id="SMDEV" + secrets.token_hex(14)[:29],
        )
    except InboundUnavailable:
        messages.error(request, "Blink could not queue this text: the task broker is down. "
                       "It waits in the database; beat's sweep acts on it once Redis "
                       "is back.")
    else:
        messages.success(request, f"Texted Blink as {phone_mask(phone)}.")
    return redirect("dev-outbox")


@require_POST
@console_view(write=True)
def dev_demo_sign_in(request: ConsoleRequest) -> HttpResponse:
    """Sign in to 'Windows' as a demo directory user, to see resets and cause lockouts."""
    _outbox_on()
    form = DemoSignInForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a demo user name and a password.")
    else:
        messages.info(request, demo_sign_in(company_id=request.membership.company.pk,
                                            username=form.cleaned_data["username"],
                                            password=form.cleaned_data["password"]))
    return redirect("dev-outbox")
