"""Forms of the Blink User Setup and Blink Users pages."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from phonenumber_field.formfields import PhoneNumberField

from blink.models import BlinkUser
from clients.forms import OneValueForm
from clients.models import Client, Company

# What people type in a phone number; anything else (letters, other scripts' digits) is refused
# rather than guessed at.
PHONE_TYPED = re.compile(r"[0-9+\-(). ]*")
PHONE_UNAVAILABLE = (
    "This number can't be used for this user. Check it, or leave the phone empty: the user "
    "chooses their number when they activate Blink."
)
PHONE_NEEDS_PROOF = (
    "This user is Active: Blink texts their passwords to the number they confirmed with a "
    "code, so the console cannot change it. If their number changed, use Reset User: they "
    "confirm the new one with a code texted to it."
)


class BlinkUserEditForm(OneValueForm):
    """Email, and the phone of a user not yet Active (see ``blink_user_update``)."""

    email = forms.EmailField(
        max_length=254, label="Email",
        help_text="Blink sends the activation link here.",
    )

    def __init__(self, *args: Any, company: Company, phone: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not phone:
            return
        # Numbers typed without +country code are read as the company's default country.
        self.fields["phone"] = PhoneNumberField(
            region=company.default_country or None, required=False, max_length=32,
            label="Mobile phone (optional)",
            help_text="Leave empty to keep the current one. Users normally choose their own "
            "number during activation.",
        )
        self.fields["phone"].widget.attrs.update({"autocomplete": "off", "inputmode": "tel"})

    def clean_phone(self) -> str | None:
        """``None`` keeps the stored number; otherwise the number in E.164."""
        raw = self.data.get(self.add_prefix("phone"), "")
        if isinstance(raw, str) and not PHONE_TYPED.fullmatch(raw.strip()):
            raise forms.ValidationError(
                "Type the number with the digits 0-9, and + before a country code.")
        phone = self.cleaned_data.get("phone")
        return str(phone) if phone else None


class BlinkUserFilterForm(OneValueForm):
    client = forms.ModelChoiceField(queryset=Client.objects.none(), required=False,
                                    empty_label="All clients")
    q = forms.CharField(required=False, max_length=200, label="Search",
                        widget=forms.TextInput(attrs={"type": "search",
                                                      "placeholder": "Name, username or email"}))
    status = forms.ChoiceField(required=False,
                               choices=[("", "Any status"), *BlinkUser.Status.choices])

    def __init__(self, *args: Any, company: Company, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["client"].queryset = Client.objects.filter(company=company)  # type: ignore[attr-defined]
