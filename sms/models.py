"""SMS and email Blink sends and receives, verification codes, and opted-out numbers."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from phonenumber_field.modelfields import PhoneNumberField


class Message(models.Model):
    """One SMS in or out. Secrets never appear in ``body``: outbound messages that carry one
    keep the full text only encrypted in ``sealed_body``, erased once the message is sent
    or has failed for good."""

    class Direction(models.TextChoices):
        OUTBOUND = "out", "Sent"
        INBOUND = "in", "Received"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        UNDELIVERED = "undelivered", "Not delivered"
        FAILED = "failed", "Failed"
        RECEIVED = "received", "Received"

    company = models.ForeignKey("clients.Company", on_delete=models.CASCADE,
                                related_name="sms_messages")
    blink_user = models.ForeignKey("blink.BlinkUser", on_delete=models.SET_NULL, null=True,
                                   blank=True, related_name="sms_messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    # What the message is for: "verification", "activated", "help", "reset", …
    kind = models.CharField(max_length=32, blank=True)
    phone = PhoneNumberField()
    # The sending (or receiving) Blink number.
    blink_number = models.CharField(max_length=32, blank=True)
    body = models.TextField(max_length=1600)
    sealed_body = models.TextField(blank=True, default="", editable=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    # Twilio's MessageSid: unique, so a webhook delivered twice acts once.
    provider_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    error_code = models.CharField(max_length=16, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.kind or 'sms'} {self.status}"


class VerificationCode(models.Model):
    """A 6-digit code sent by SMS. Only its hash is kept; single use; 10 minutes' life."""

    blink_user = models.ForeignKey("blink.BlinkUser", on_delete=models.CASCADE,
                                   related_name="verification_codes")
    purpose = models.CharField(max_length=32, default="activation")
    phone = PhoneNumberField()
    code_hash = models.CharField(max_length=128)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    # Set when a newer code replaces this one: a resend kills the old code.
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["blink_user", "purpose", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.purpose} code for {self.blink_user_id}"


class OptOut(models.Model):
    """A number that texted STOP (or that the provider reports unsubscribed, Twilio 21610).
    Nothing is sent to it until it texts START."""

    phone = PhoneNumberField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return "opted-out number"


class OutboxEmail(models.Model):
    """An email kept instead of sent, for the trial and for development."""

    to = models.TextField()
    subject = models.CharField(max_length=300)
    body_text = models.TextField()
    body_html = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.subject} → {self.to}"


class OutboxSms(models.Model):
    """An SMS the outbox backend 'delivered': the development stand-in for a phone.

    Unlike ``Message.body`` this holds the text as the phone would show it, codes
    included, which is the point of the trial's outbox. Never used in production.
    """

    to = models.CharField(max_length=32)
    sender = models.CharField(max_length=32, blank=True)
    body = models.TextField()
    provider_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"SMS to {self.to}"
