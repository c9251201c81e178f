"""Blink users and their lifecycle, the audit trail and worker heartbeats."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from phonenumber_field.modelfields import PhoneNumberField


class BlinkUser(models.Model):
    """A directory user an admin gave Blink: invited, then active once their phone is verified."""

    class Status(models.TextChoices):
        NEEDS_EMAIL = "needs_email", "Needs email"
        INVITED = "invited", "Invited"
        VERIFYING_PHONE = "verifying_phone", "Verifying phone"
        ACTIVE = "active", "Active"
        LEFT_DIRECTORY = "left_directory", "Left directory"

    class EmailStatus(models.TextChoices):
        NONE = "", "Not sent"
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    client = models.ForeignKey("clients.Client", on_delete=models.CASCADE,
                               related_name="blink_users")
    connection = models.ForeignKey("directory.Connection", on_delete=models.CASCADE,
                                   related_name="blink_users")
    # The directory's stable id (AD objectGUID, Graph id): names and DNs change, this does not.
    object_id = models.CharField(max_length=64)
    username = models.CharField(max_length=256)
    display_name = models.CharField(max_length=256, blank=True)
    given_name = models.CharField(max_length=128, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    # One phone, one Blink user, across every company: the reply to "Reset" must be unambiguous.
    phone = PhoneNumberField(null=True, blank=True, unique=True)
    # The number being verified during activation; it becomes ``phone`` once confirmed.
    pending_phone = PhoneNumberField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.INVITED)
    # sha256 of the activation link's token; the token itself is only ever in the email.
    activation_token_hash = models.CharField(max_length=64, null=True, blank=True, unique=True)
    activation_expires_at = models.DateTimeField(null=True, blank=True)
    activation_email_status = models.CharField(max_length=8, choices=EmailStatus.choices,
                                               blank=True, default=EmailStatus.NONE)
    activation_email_error = models.CharField(max_length=300, blank=True)
    activation_email_sent_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    # A hash of the PIN the user chose, for clients whose SMS reset needs one.
    pin_hash = models.CharField(max_length=128, blank=True)
    last_reset_at = models.DateTimeField(null=True, blank=True)
    # When the directory last reported the account locked; None when it is not locked.
    locked_since = models.DateTimeField(null=True, blank=True)
    # Self-service is paused after too many wrong codes (SECURITY.md), never the directory account.
    paused_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["display_name", "username"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "object_id"],
                                    name="blink_user_once_per_directory_user"),
        ]
        indexes = [models.Index(fields=["client", "status"])]

    def __str__(self) -> str:
        return self.display_name or self.username

    def first_name(self) -> str:
        return self.given_name or (self.display_name or self.username).split(" ")[0]

    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    def pin_missing(self) -> bool:
        """Active, on a client whose SMS reset needs a PIN, without one (activated before
        the client asked for it): texted resets are refused until they choose one (Ask for a
        PIN, ``blink_user_pin_ask``)."""
        return self.is_active() and self.client.sms_reset_needs_pin and not self.pin_hash

    def masked_phone(self) -> str:
        """The phone as admins and logs see it: the last four digits only."""
        return phone_mask(str(self.phone)) if self.phone else ""


def phone_mask(phone: str) -> str:
    """``+15551234567`` → ``•••• 4567``."""
    digits = "".join(c for c in phone if c.isdigit())
    return f"•••• {digits[-4:]}" if len(digits) >= 4 else "••••"


class AuditEvent(models.Model):
    """One thing that happened: who did what, to which object, with what result, from where.

    Rows are only ever added; nothing in Blink updates or deletes them.
    """

    class Result(models.TextChoices):
        OK = "ok", "Succeeded"
        FAILED = "failed", "Failed"
        REFUSED = "refused", "Refused"

    company = models.ForeignKey(
        "clients.Company", on_delete=models.CASCADE, related_name="audit_events"
    )
    client = models.ForeignKey(
        "clients.Client", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Kept as text too, so the trail still reads right after the account is deleted.
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    target_label = models.CharField(max_length=200, blank=True)
    result = models.CharField(max_length=8, choices=Result.choices, default=Result.OK)
    detail = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["company", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action}"


class WorkerHeartbeat(models.Model):
    """The last time each Celery worker ran the heartbeat task; /healthz reads it."""

    hostname = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.hostname} at {self.seen_at:%H:%M:%S}"


class ResetRequest(models.Model):
    """One reset or unlock someone asked for, and how it ended. Never the password."""

    class Kind(models.TextChoices):
        RESET = "reset", "Reset password"
        UNLOCK = "unlock", "Unlock"

    class Channel(models.TextChoices):
        CONSOLE = "console", "Console"
        SMS = "sms", "SMS"
        APP = "app", "App"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Resetting"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    blink_user = models.ForeignKey(BlinkUser, on_delete=models.CASCADE,
                                   related_name="reset_requests")
    kind = models.CharField(max_length=6, choices=Kind.choices, default=Kind.RESET)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                     null=True, blank=True, related_name="+")
    requested_label = models.CharField(max_length=150)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    # A sentence for the admin when it failed.
    reason = models.CharField(max_length=500, blank=True)
    # The new password, Fernet-sealed, from just before the directory call until its SMS
    # is recorded: a task that runs again after a crash re-applies the same password
    # rather than making a second one.
    sealed_password = models.TextField(blank=True, default="", editable=False)
    directory_done_at = models.DateTimeField(null=True, blank=True)
    message = models.ForeignKey("sms.Message", on_delete=models.SET_NULL, null=True,
                                blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # When its task was last handed to the broker: when it was made, or when beat's
    # resets_requeue queued it again because the task was lost.
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # Not stored: set on the request reset_request_create hands back when it is one already
    # under way that the caller joined, rather than one it made.
    joined = False

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.blink_user_id}: {self.status}"


class LockoutNotice(models.Model):
    """One lockout of one Blink user, as the poller saw it. The unique constraint is what
    makes a restarted poller, a duplicate task or two workers send one notice, not two."""

    blink_user = models.ForeignKey(BlinkUser, on_delete=models.CASCADE,
                                   related_name="lockout_notices")
    locked_since = models.DateTimeField()
    noticed_at = models.DateTimeField(default=timezone.now)
    message = models.ForeignKey("sms.Message", on_delete=models.SET_NULL, null=True,
                                blank=True, related_name="+")
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-noticed_at"]
        constraints = [
            models.UniqueConstraint(fields=["blink_user", "locked_since"],
                                    name="one_notice_per_lockout"),
            # One lockout at a time: Entra's start moves, so the one above is not enough.
            models.UniqueConstraint(fields=["blink_user"], condition=Q(closed_at__isnull=True),
                                    name="one_open_notice_per_user"),
        ]

    def __str__(self) -> str:
        return f"lockout of {self.blink_user_id} since {self.locked_since:%Y-%m-%d %H:%M}"
