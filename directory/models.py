"""Directory connections, and the snapshot of each directory that the console reads."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from directory.encryption import secrets_decrypt, secrets_encrypt


class Connection(models.Model):
    """How Blink reaches one client's directory."""

    class Kind(models.TextChoices):
        ACTIVE_DIRECTORY = "active_directory", "Active Directory"
        ENTRA = "entra", "Entra ID"
        DEMO = "demo", "Demo directory"

    class Outcome(models.TextChoices):
        NEVER = "never", "Never run"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        OK = "ok", "Succeeded"
        FAILED = "failed", "Failed"

    client = models.ForeignKey(
        "clients.Client", on_delete=models.CASCADE, related_name="connections"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Everything needed to connect except secrets: URLs, base DN, tenant and client ids, CA.
    parameters = models.JSONField(default=dict, blank=True)
    # Fernet token of a JSON dict (bind password, client secret); see directory.encryption.
    secrets_token = models.TextField(blank=True, default="", editable=False)
    queue = models.CharField(
        max_length=64,
        default="directory",
        help_text="The Celery queue this directory's work goes to. A client whose AD is only "
        "reachable inside its network gets a worker there started with -Q dir.<client>.",
    )
    monitor_lockouts = models.BooleanField(default=True)
    lockout_monitoring_unavailable = models.CharField(max_length=300, blank=True)

    last_test_status = models.CharField(max_length=8, choices=Outcome.choices,
                                        default=Outcome.NEVER)
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_message = models.CharField(max_length=500, blank=True)

    last_sync_status = models.CharField(max_length=8, choices=Outcome.choices,
                                        default=Outcome.NEVER)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_message = models.CharField(max_length=500, blank=True)
    last_sync_counts = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["kind", "id"]
        constraints = [
            models.UniqueConstraint(fields=["client", "kind"], name="one_connection_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.client}"

    def secrets(self) -> dict[str, str]:
        return secrets_decrypt(self.secrets_token)

    def set_secrets(self, values: dict[str, str]) -> None:
        self.secrets_token = secrets_encrypt(values)

    def is_demo(self) -> bool:
        return self.kind == self.Kind.DEMO

    def describe(self) -> str:
        """Where this connection points, in a few words (no secrets)."""
        p: dict[str, Any] = self.parameters
        if self.kind == self.Kind.ACTIVE_DIRECTORY:
            return f"{p.get('url', '')} · {p.get('base_dn', '')}"
        if self.kind == self.Kind.ENTRA:
            return f"tenant {p.get('tenant_id', '')}"
        return "a directory kept inside Blink for trying it out"


class Entry(models.Model):
    """One OU, group or user as the last sync saw it. The console reads these, never the
    directory itself."""

    class Kind(models.TextChoices):
        ORG_UNIT = "ou", "Organizational unit"
        GROUP = "group", "Group"
        USER = "user", "User"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="entries")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    object_id = models.CharField(max_length=64)
    name = models.CharField(max_length=256)
    dn = models.CharField(max_length=1024, blank=True)
    # The OU holding this entry, when the directory has OUs.
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    username = models.CharField(max_length=256, blank=True)
    upn = models.CharField(max_length=256, blank=True)
    given_name = models.CharField(max_length=128, blank=True)
    surname = models.CharField(max_length=128, blank=True)
    email = models.CharField(max_length=256, blank=True)
    mobile = models.CharField(max_length=64, blank=True)
    enabled = models.BooleanField(default=True)
    protected = models.BooleanField(default=False)
    password_never_expires = models.BooleanField(default=False)
    on_premises_sync = models.BooleanField(default=False)
    # The objectGUID of the AD account an Entra user is synced from ("" when Entra does not
    # name one): that user's password is reset in AD as this account, never by its Graph id.
    on_premises_id = models.CharField(max_length=36, blank=True, default="")
    members = models.ManyToManyField(
        "self", symmetrical=False, related_name="member_of", through="GroupMember", blank=True
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "kind", "object_id"],
                                    name="entry_unique_object")
        ]
        indexes = [models.Index(fields=["connection", "kind", "parent"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name}"


class GroupMember(models.Model):
    """A user in a group, directly or through nested groups."""

    group = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "user"], name="group_member_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.group_id}"


class DemoObject(models.Model):
    """An object of a demo directory: for the trial, Blink plays the directory itself."""

    class Kind(models.TextChoices):
        ORG_UNIT = "ou", "Organizational unit"
        GROUP = "group", "Group"
        USER = "user", "User"

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="demo_objects"
    )
    kind = models.CharField(max_length=5, choices=Kind.choices)
    object_id = models.CharField(max_length=64)
    name = models.CharField(max_length=256)
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    username = models.CharField(max_length=64, blank=True)
    given_name = models.CharField(max_length=64, blank=True)
    surname = models.CharField(max_length=64, blank=True)
    email = models.CharField(max_length=256, blank=True)
    mobile = models.CharField(max_length=32, blank=True)
    enabled = models.BooleanField(default=True)
    # Groups whose members are privileged, like Domain Admins.
    privileged = models.BooleanField(default=False)
    # Direct members of a group (users or groups).
    members = models.ManyToManyField("self", symmetrical=False, related_name="member_of",
                                     blank=True)
    password_hash = models.CharField(max_length=256, blank=True)
    must_change_password = models.BooleanField(default=False)
    failed_logins = models.PositiveSmallIntegerField(default=0)
    locked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "object_id"], name="demo_object_unique")
        ]

    def __str__(self) -> str:
        return f"Demo {self.get_kind_display()} {self.name}"
