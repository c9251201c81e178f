"""The MSP side: the company, its admins, its branding and its clients."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone
from phonenumber_field.modelfields import PhoneNumberField

from clients.branding import HEX_PATTERN

HEX_COLOUR = RegexValidator(
    HEX_PATTERN, "Enter a colour as # followed by six hex digits, e.g. #1a73e8."
)


class Company(models.Model):
    """An MSP: the tenant every console object belongs to."""

    name = models.CharField(max_length=120)
    support_email = models.EmailField(
        blank=True, help_text="Shown in every email and page Blink sends your users."
    )
    site_url = models.URLField(
        max_length=200,
        help_text="The public address of Blink. Links in emails and SMS are built from it.",
    )
    default_country = models.CharField(
        max_length=2,
        default="US",
        help_text="Phone numbers typed without a +country code are read as this country's.",
    )
    sms_number = PhoneNumberField(
        blank=True,
        help_text="The number your users text \u201cReset\u201d to and receive Blink's SMS from.",
    )
    messaging_service_sid = models.CharField(
        max_length=34, blank=True,
        help_text="A Twilio Messaging Service SID (MG…) to send through instead of the number.",
    )
    notify_support_on_reset = models.BooleanField(
        default=False,
        help_text="Email the support address after every reset or unlock (no password in it).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "companies"

    def __str__(self) -> str:
        return self.name

    def link(self, path: str) -> str:
        """An absolute URL on the company's configured site, never the request's host."""
        return self.site_url.rstrip("/") + path


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    READ_ONLY = "read_only", "Read-only"


class Membership(models.Model):
    """An admin user of a company. One company per console account."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ADMIN)

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()} of {self.company})"

    def can_write(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


DEFAULT_EMAIL_TEXT = (
    "Hi {first_name},\n\n"
    "{company_name} uses Blink so you can reset your Windows password or unlock your "
    "account from your phone, any time, without calling the help desk.\n\n"
    "Activate Blink with the button below. It takes a minute: you confirm your mobile "
    "number with a code we text you."
)


class Branding(models.Model):
    """How Blink looks to a company's users: logo, colours and the activation email text."""

    company = models.OneToOneField(Company, on_delete=models.CASCADE, related_name="branding")
    # The logo is re-encoded on upload and small, so it lives in the database:
    # every web process can serve it without shared file storage.
    logo = models.BinaryField(blank=True, default=b"", editable=False)
    logo_content_type = models.CharField(max_length=32, blank=True, editable=False)
    primary_colour = models.CharField(max_length=7, default="#1d4ed8", validators=[HEX_COLOUR])
    accent_colour = models.CharField(max_length=7, default="#0f766e", validators=[HEX_COLOUR])
    email_text = models.TextField(max_length=4000, default=DEFAULT_EMAIL_TEXT)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Branding of {self.company}"

    def has_logo(self) -> bool:
        return bool(self.logo)

    def logo_version(self) -> str:
        """A short digest of the logo, so its URL changes whenever the image does."""
        return hashlib.sha256(bytes(self.logo)).hexdigest()[:12]

    def logo_url(self) -> str:
        if not self.has_logo():
            return ""
        return reverse(
            "branding-logo", kwargs={"company_id": self.company_id, "version": self.logo_version()}
        )


class ClientQuerySet(models.QuerySet["Client"]):
    def active(self) -> ClientQuerySet:
        return self.filter(archived_at__isnull=True)


class Client(models.Model):
    """A client company of the MSP, with its own directory and reset policy."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="clients")
    name = models.CharField(max_length=120)
    temp_password_length = models.PositiveSmallIntegerField(
        default=12,
        validators=[MinValueValidator(8), MaxValueValidator(64)],
        help_text="Length of the temporary passwords Blink sets (8 to 64). "
        "Never shorter than the directory's own minimum.",
    )
    unlock_on_reset = models.BooleanField(
        default=True, help_text="Unlock the account too when Blink resets its password."
    )
    sms_reset_needs_pin = models.BooleanField(
        default=False,
        help_text="Users choose a 4–6 digit PIN when activating and text RESET 1234. Guards "
        "against recycled and spoofed numbers.",
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = ClientQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                "company",
                Lower("name"),
                name="client_name_unique_per_company",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def is_archived(self) -> bool:
        return self.archived_at is not None
