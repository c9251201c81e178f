"""End-user pages of the activation flow, branded with the user's MSP."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods
from phonenumber_field.formfields import PhoneNumberField
from phonenumber_field.phonenumber import PhoneNumber

from blink import activation
from blink.audit import client_ip
from blink.invitations import activation_token_hash
from blink.models import BlinkUser
from clients.forms import OneValueForm
from clients.models import Branding, Company
from sms.codes import SelfServicePaused, is_code_shaped
from sms.limits import SendLimited
from sms.services import company_sms_number

SESSION_KEY = "activation"
DONE_KEY = "activation_done"
PHONE_CHARS = set("+0123456789 ()-./")


class PhoneForm(OneValueForm):
    phone = forms.CharField(max_length=32, label="Mobile number")

    def __init__(self, *args: Any, region: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.region = region

    def clean_phone(self) -> PhoneNumber:
        raw: str = self.cleaned_data["phone"].strip()
        digits = sum(c.isdigit() for c in raw)
        if not set(raw) <= PHONE_CHARS or not 6 <= digits <= 15:
            raise forms.ValidationError(
                "Enter a mobile number with digits only, like +1 555 010 0199."
            )
        number: PhoneNumber = PhoneNumberField(region=self.region).clean(raw)
        return number


class PinForm(OneValueForm):
    pin = forms.CharField(max_length=32, label="PIN", strip=True)
    pin_again = forms.CharField(max_length=32, label="PIN again", strip=True)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("pin") and data.get("pin_again") and data["pin"] != data["pin_again"]:
            self.add_error("pin_again", "The two PINs are not the same. Type it again.")
        return data


class CodeForm(OneValueForm):
    code = forms.CharField(max_length=32, label="6-digit code")

    def clean_code(self) -> str:
        code: str = self.cleaned_data["code"].replace(" ", "")
        if not is_code_shaped(code):
            raise forms.ValidationError("Enter the 6 digits from the text message.")
        return code


def _page(request: HttpRequest, template: str, company: Company | None,
          context: dict[str, Any] | None = None, status: int = 200) -> HttpResponse:
    branding = Branding.objects.filter(company=company).first() if company else None
    base = {"company": company, "branding": branding, "enduser": True}
    return render(request, f"activation/{template}", {**base, **(context or {})}, status=status)


def _invalid_link(request: HttpRequest) -> HttpResponse:
    # The same page for unknown, used, expired and tampered links: nothing to learn from it.
    return _page(request, "invalid.html", None, status=404)


def _steps(blink_user: BlinkUser) -> int:
    """How many steps this user's activation has: a PIN step for clients that need one."""
    return 3 if blink_user.client.sms_reset_needs_pin else 2


def _current(request: HttpRequest) -> BlinkUser | None:
    state = request.session.get(SESSION_KEY)
    if not isinstance(state, dict):
        return None
    try:
        return activation.activation_user_for_session(user_id=int(state["user"]),
                                                      token_hash=str(state["token"]))
    except (KeyError, TypeError, ValueError):
        return None


@require_GET
@never_cache
def activation_start(request: HttpRequest, token: str) -> HttpResponse:
    """Follow the emailed link: remember the user in the session, then drop the token
    from the address bar (and from any Referer) by redirecting."""
    blink_user = activation.activation_user_for_token(token)
    if blink_user is None:
        return _invalid_link(request)
    request.session.cycle_key()
    request.session[SESSION_KEY] = {"user": blink_user.pk, "token": activation_token_hash(token)}
    request.session.pop(DONE_KEY, None)
    return redirect("activation-phone")


@require_http_methods(["GET", "POST"])
@never_cache
def activation_phone(request: HttpRequest) -> HttpResponse:
    blink_user = _current(request)
    if blink_user is None:
        return _invalid_link(request)
    company = blink_user.client.company
    if blink_user.is_active():
        return _pin_start(request, blink_user)
    form = PhoneForm(request.POST or None, region=company.default_country)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                activation.activation_phone_submit(
                    blink_user=blink_user, number=form.cleaned_data["phone"],
                    ip=client_ip(request),
                )
                return redirect("activation-code")
            except activation.ActivationLinkDead:
                return _invalid_link(request)
            except activation.ActivationRefused as refused:
                form.add_error("phone", refused.message)
            except SelfServicePaused:
                return _paused(request, company)
            except SendLimited as limited:
                return _too_many(request, company, limited)
    elif blink_user.pending_phone:
        form = PhoneForm(initial={"phone": blink_user.pending_phone.as_international},
                         region=company.default_country)
    return _page(request, "phone.html", company, {"form": form, "blink_user": blink_user,
                                                  "steps": _steps(blink_user)}, status=status)


def _pin_start(request: HttpRequest, blink_user: BlinkUser) -> HttpResponse:
    """An Active user choosing a PIN: the first step texts a code to the phone they have
    (on a POST: mail scanners that open links must not set off texts)."""
    company = blink_user.client.company
    if request.method == "POST":
        try:
            activation.pin_code_send(blink_user=blink_user, ip=client_ip(request))
        except activation.ActivationRefused:
            return _invalid_link(request)
        except SelfServicePaused:
            return _paused(request, company)
        except SendLimited as limited:
            return _too_many(request, company, limited)
        return redirect("activation-code")
    return _page(request, "pin_start.html", company, {"blink_user": blink_user,
                                                      "steps": _steps(blink_user)})


def _too_many(request: HttpRequest, company: Company, limited: SendLimited) -> HttpResponse:
    minutes = max(1, round(limited.retry_after / 60))
    return _page(request, "too_many.html", company, {"minutes": minutes}, status=429)


def _paused(request: HttpRequest, company: Company) -> HttpResponse:
    # The session ends with the pause: the page tells the user to come back with the link.
    request.session.pop(SESSION_KEY, None)
    return _page(request, "paused.html", company, status=429)


# The code and the PIN stay out of error reports: as posted, and as locals here and below.
@sensitive_variables()
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
@never_cache
def activation_code(request: HttpRequest) -> HttpResponse:
    blink_user = _current(request)
    if blink_user is None:
        return _invalid_link(request)
    if not blink_user.pending_phone:
        return redirect("activation-phone")
    company = blink_user.client.company
    form = CodeForm(request.POST or None)
    notice = ""
    status = 200
    if request.method == "POST" and "resend" in request.POST:
        try:
            activation.activation_code_resend(blink_user=blink_user, ip=client_ip(request))
        except activation.ActivationLinkDead:
            return _invalid_link(request)
        except activation.ActivationRefused:
            return redirect("activation-phone")  # no number to resend to
        except SelfServicePaused:
            return _paused(request, company)
        except SendLimited as limited:
            return _too_many(request, company, limited)
        form = CodeForm()
        notice = "A new code is on its way. The previous code no longer works."
    elif request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                done = activation.activation_code_submit(
                    blink_user=blink_user, code=form.cleaned_data["code"], ip=client_ip(request)
                )
            except activation.ActivationLinkDead:
                return _invalid_link(request)
            except activation.ActivationRefused as refused:
                form.add_error("code", refused.message)
            except SelfServicePaused:
                return _paused(request, company)
            else:
                if isinstance(done, activation.CodeVerified):
                    # The session, not the browser, carries the proof to the PIN step.
                    request.session[SESSION_KEY] = {**request.session[SESSION_KEY],
                                                    "verified": done.code_id}
                    return redirect("activation-pin")
                return _finished(request, done)
    return _page(request, "code.html", company, {
        "form": form, "notice": notice, "masked": BlinkUser(phone=blink_user.pending_phone)
        .masked_phone(), "steps": _steps(blink_user), "choosing_pin": blink_user.is_active(),
    }, status=status)


def _finished(request: HttpRequest, done: activation.Activated) -> HttpResponse:
    request.session.pop(SESSION_KEY, None)
    request.session[DONE_KEY] = done.blink_user.pk
    return redirect("activation-done")


@sensitive_variables()
@sensitive_post_parameters("pin", "pin_again")
@require_http_methods(["GET", "POST"])
@never_cache
def activation_pin(request: HttpRequest) -> HttpResponse:
    """The last step for clients whose SMS reset needs a PIN: choose it."""
    blink_user = _current(request)
    if blink_user is None:
        return _invalid_link(request)
    verified = request.session[SESSION_KEY].get("verified")
    if not isinstance(verified, int) or not blink_user.client.sms_reset_needs_pin:
        return redirect("activation-code")
    company = blink_user.client.company
    form = PinForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                done = activation.activation_pin_submit(
                    blink_user=blink_user, code_id=verified, pin=form.cleaned_data["pin"],
                    ip=client_ip(request),
                )
            except activation.PinProofMissing:
                request.session[SESSION_KEY] = {
                    key: value for key, value in request.session[SESSION_KEY].items()
                    if key != "verified"}
                return redirect("activation-code")
            except activation.ActivationLinkDead:
                return _invalid_link(request)
            except activation.ActivationRefused as refused:
                form.add_error("pin", refused.message)
            else:
                return _finished(request, done)
    return _page(request, "pin.html", company, {"form": form, "steps": _steps(blink_user)},
                 status=status)


@require_GET
@never_cache
def activation_done(request: HttpRequest) -> HttpResponse:
    user_id = request.session.get(DONE_KEY)
    blink_user = (BlinkUser.objects.select_related("client__company")
                  .filter(pk=user_id, status=BlinkUser.Status.ACTIVE).first()
                  if isinstance(user_id, int) else None)
    if blink_user is None:
        return _invalid_link(request)
    company = blink_user.client.company
    return _page(request, "done.html", company, {
        "sms_number": company_sms_number(company), "blink_user": blink_user,
    })


def _vcard_text(value: str) -> str:
    """A vCard text value (RFC 2426): backslash, comma and semicolon escaped, and no line
    break that could start a line of its own."""
    value = value.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
    return " ".join(value.splitlines())


@require_GET
def contact_card(request: HttpRequest, company_id: int) -> HttpResponse:
    """A vCard of the company's Blink number, to save on the phone."""
    company = get_object_or_404(Company, pk=company_id)
    number = company_sms_number(company)
    card = "\r\n".join([
        "BEGIN:VCARD", "VERSION:3.0", f"FN:{_vcard_text(f'Blink ({company.name})')}",
        f"ORG:{_vcard_text(company.name)}",
        f"TEL;TYPE=CELL:{number}",
        "NOTE:Text RESET for a new password or UNLOCK to unlock your account.",
        "END:VCARD", "",
    ])
    response = HttpResponse(card, content_type="text/vcard; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="blink.vcf"'
    return response


