from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from clients.branding import (
    EMAIL_PLACEHOLDERS,
    HEX_PATTERN,
    Logo,
    email_text_unknown_placeholders,
    logo_reencode,
)
from clients.models import Client, Company


def _country_choices() -> list[tuple[str, str]]:
    return sorted(
        (region, f"{region} (+{phonenumbers.country_code_for_region(region)})")
        for region in phonenumbers.SUPPORTED_REGIONS
    )


class OneValueForm(forms.Form):
    """A form that refuses a field sent more than once, rather than silently keeping the last."""

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if hasattr(self.data, "getlist"):
            for name in self.fields:
                if len(self.data.getlist(name)) > 1:
                    self.add_error(name, "Enter a single value for this field.")
        return cleaned


class CompanySettingsForm(OneValueForm):
    name = forms.CharField(max_length=120, label="Company name")
    support_email = forms.EmailField(
        max_length=254, required=False, label="Support email",
        help_text="Shown in every email and page Blink sends your users.",
    )
    notify_support_on_reset = forms.BooleanField(
        required=False, label="Email the support address after every reset or unlock",
        help_text="Who, which account, when and who asked. Never the password.",
    )
    site_url = forms.URLField(
        max_length=200, label="Public site URL", assume_scheme="https",
        help_text="The address your users reach Blink at. Links in emails and SMS are built "
        "from it, never from the address a request happened to use.",
    )
    default_country = forms.ChoiceField(
        choices=_country_choices, label="Default country for phone numbers",
        help_text="Numbers typed without +country code are read as this country's.",
    )
    sms_number = forms.CharField(
        max_length=32, required=False, label="Blink SMS number",
        help_text="The Twilio number your users text \u201cReset\u201d to and get Blink's SMS "
        "from, e.g. +15551234567. Leave it empty to use Blink's shared number.",
    )
    messaging_service_sid = forms.RegexField(
        regex=r"^MG[0-9a-fA-F]{32}\Z", max_length=34, required=False,
        label="Twilio Messaging Service SID",
        error_messages={"invalid": "Enter a Messaging Service SID as Twilio's console shows "
                        "it: MG followed by 32 hex digits."},
        help_text="Optional. Blink then sends through this Messaging Service (MG\u2026) "
        "instead of the number above.",
    )

    def __init__(self, *args: Any, company: Company | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.company = company

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        typed = self.cleaned_data.get("sms_number")
        country = self.cleaned_data.get("default_country")
        if typed and country:
            self.cleaned_data["sms_number"] = self._sms_number(typed, country)
        if self.cleaned_data.get("notify_support_on_reset") and \
                not self.cleaned_data.get("support_email") and "support_email" not in self.errors:
            self.add_error("notify_support_on_reset", "Enter the support email to send these to.")
        return cleaned

    def _sms_number(self, typed: str, country: str) -> str:
        """The number in E.164, read as ``country``'s when typed without +country code."""
        number = None
        # Digits from other scripts (٤١٥, full-width) are refused rather than guessed at.
        if typed.isascii():
            try:
                number = phonenumbers.parse(typed, country)
            except phonenumbers.NumberParseException:
                number = None
        if number is None or not phonenumbers.is_valid_number(number):
            self.add_error("sms_number", "Enter a phone number Blink can text from, e.g. "
                           "+15551234567 (or a number of the default country).")
            return ""
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if e164 == settings.BLINK_SMS_NUMBER:
            self.add_error("sms_number", "This is Blink's shared number. Leave the field "
                           "empty to use it.")
            return ""
        others = Company.objects.filter(sms_number=e164)
        if self.company is not None:
            others = others.exclude(pk=self.company.pk)
        if others.exists():
            self.add_error("sms_number", "Another company in this Blink already uses this "
                           "number. Each company needs its own, so texts reach the right one.")
            return ""
        return e164

    def clean_site_url(self) -> str:
        url: str = self.cleaned_data["site_url"]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise forms.ValidationError("Enter an address that starts with https://.")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise forms.ValidationError("Enter just the site's address, without ?, # or a login.")
        return url.rstrip("/")


class BrandingForm(OneValueForm):
    logo = forms.FileField(
        required=False, label="Logo",
        help_text="PNG, JPEG or WebP, at most 1 MB. It is resized to fit 512 × 512.",
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg,image/webp"}),
    )
    remove_logo = forms.BooleanField(required=False, label="Remove the current logo")
    primary_colour = forms.RegexField(
        regex=HEX_PATTERN, max_length=7, label="Primary colour",
        error_messages={"invalid": "Enter a colour as # and six hex digits, e.g. #1d4ed8."},
        widget=forms.TextInput(attrs={"type": "color"}),
    )
    accent_colour = forms.RegexField(
        regex=HEX_PATTERN, max_length=7, label="Accent colour",
        error_messages={"invalid": "Enter a colour as # and six hex digits, e.g. #0f766e."},
        widget=forms.TextInput(attrs={"type": "color"}),
    )
    email_text = forms.CharField(
        max_length=4000, label="Activation email text",
        widget=forms.Textarea(attrs={"rows": 9}),
        help_text="Plain text. Placeholders: "
        + ", ".join(f"{{{name}}} ({meaning})" for name, meaning in EMAIL_PLACEHOLDERS.items()),
    )

    def clean_logo(self) -> Logo | None:
        upload: UploadedFile | None = self.cleaned_data.get("logo")
        if not upload:
            return None
        return logo_reencode(upload)

    def clean_email_text(self) -> str:
        text: str = self.cleaned_data["email_text"].replace("\r\n", "\n").strip()
        unknown = email_text_unknown_placeholders(text)
        if unknown:
            known = ", ".join(f"{{{name}}}" for name in EMAIL_PLACEHOLDERS)
            raise forms.ValidationError(
                f"Blink does not know {', '.join(f'{{{n}}}' for n in unknown)}. "
                f"Use only {known}."
            )
        return text


class ClientForm(OneValueForm):
    name = forms.CharField(max_length=120, label="Client name")
    temp_password_length = forms.IntegerField(
        min_value=8, max_value=64, initial=12, label="Temporary password length",
        help_text="8 to 64 characters. Blink never goes below the directory's own minimum.",
    )
    unlock_on_reset = forms.BooleanField(
        required=False, initial=True, label="Unlock the account when resetting its password"
    )
    sms_reset_needs_pin = forms.BooleanField(
        required=False, initial=False, label="SMS reset needs the user's PIN",
        help_text="Users choose a 4–6 digit PIN when they activate and text RESET 1234. "
        "Guards against recycled and spoofed numbers. Users who activated before this "
        "was on can be emailed a link to choose one, from this page once saved or from "
        "Blink Users.",
    )

    def __init__(self, *args: Any, company: Company, instance: Client | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.company = company
        self.instance = instance

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        clash = Client.objects.filter(company=self.company, name__iexact=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("You already have a client with this name.")
        return name
