from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from django import forms
from django.core.files.uploadedfile import UploadedFile

from clients.forms import OneValueForm

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CA_MAX_BYTES = 256 * 1024
CERTIFICATE_MAX_BYTES = 64 * 1024


def _queue_field() -> forms.CharField:
    return forms.CharField(
        max_length=64, initial="directory", label="Worker queue",
        help_text="Leave as “directory” unless this client's directory is only reachable from a "
        "worker inside its network, started with -Q dir.<client>.",
    )


class ConnectionFormBase(OneValueForm):
    """What every kind of connection has: a queue and whether to watch lockouts."""

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, editing: bool = False,
                 stored: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """``stored``: the parameters saved so far, when editing."""
        super().__init__(*args, **kwargs)
        self.editing = editing
        self.stored = stored or {}
        for name in self.secret_fields:
            field = self.fields[name]
            field.required = not editing
            if editing:
                field.help_text = "Stored encrypted and never shown. Leave empty to keep it."

    def clean_queue(self) -> str:
        queue: str = self.cleaned_data["queue"].strip()
        if not QUEUE_NAME.match(queue):
            raise forms.ValidationError("Use letters, digits, dots, dashes and underscores only.")
        return queue

    def parameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def secrets(self) -> dict[str, str | None]:
        return {name: self.cleaned_data.get(name) or "" for name in self.secret_fields}


class ActiveDirectoryForm(ConnectionFormBase):
    secret_fields = ("bind_password",)

    url = forms.CharField(
        max_length=200, label="Server URL", initial="ldaps://",
        help_text="ldaps://dc1.corp.example:636, or ldap://…:389 with StartTLS.",
    )
    start_tls = forms.BooleanField(required=False, label="Use StartTLS on an ldap:// URL")
    bind_user = forms.CharField(
        max_length=256, label="Service account",
        help_text="As a UPN (svc-blink@corp.example) or a DN. It needs the right to reset "
        "passwords and unlock accounts in the OUs Blink serves.",
    )
    bind_password = forms.CharField(
        max_length=256, label="Service account password", strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    base_dn = forms.CharField(max_length=512, label="Base DN",
                              help_text="For example DC=corp,DC=example.")
    scope_dns = forms.CharField(
        required=False, max_length=8000, label="Limit to these OUs",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One DN per line. Empty: everything under the base DN.",
    )
    ca_pem = forms.CharField(
        required=False, max_length=CA_MAX_BYTES, label="CA certificate (PEM)",
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "-----BEGIN CERTIFICATE-----"}),
        help_text="The certificate authority that signed the domain controllers' certificates. "
        "Empty: the system's trusted authorities.",
    )
    ca_file = forms.FileField(required=False, label="…or upload the CA certificate")
    queue = _queue_field()
    monitor_lockouts = forms.BooleanField(required=False, initial=True,
                                          label="Watch for account lockouts")

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"].strip()
        parts = urlsplit(url)
        if parts.scheme not in ("ldaps", "ldap") or not parts.hostname:
            raise forms.ValidationError("Enter an ldaps:// or ldap:// URL with a host name.")
        try:
            parts.port  # noqa: B018 (raises on a malformed port)
        except ValueError:
            raise forms.ValidationError("The port in this URL is not a number.") from None
        return url

    def clean_bind_password(self) -> str:
        password: str = self.cleaned_data.get("bind_password") or ""
        if password and not password.strip():
            raise forms.ValidationError("The password cannot be only spaces.")
        return password

    def clean_ca_file(self) -> str:
        upload: UploadedFile | None = self.cleaned_data.get("ca_file")
        if not upload:
            return ""
        if (upload.size or 0) > CA_MAX_BYTES:
            raise forms.ValidationError("A CA certificate file is at most 256 kB.")
        return upload.read().decode("ascii", errors="replace")

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        url = cleaned.get("url", "")
        if url.startswith("ldap://") and not cleaned.get("start_tls"):
            self.add_error(
                "url",
                "Active Directory only sets passwords over an encrypted connection: use "
                "ldaps:// or tick StartTLS.",
            )
        pem = cleaned.get("ca_file") or cleaned.get("ca_pem", "")
        if pem.strip():
            try:
                x509.load_pem_x509_certificates(pem.strip().encode())
            except ValueError:
                self.add_error("ca_pem", "This is not a PEM certificate (-----BEGIN "
                               "CERTIFICATE----- …).")
        cleaned["ca_pem"] = pem.strip()
        moved = self.editing and any(
            name in cleaned and cleaned[name] != self.stored.get(name, "")
            for name in ("url", "ca_pem"))
        if moved and not cleaned.get("bind_password") and "bind_password" not in self.errors:
            # Else anyone who may edit this could point it at a server of their own and
            # have the next test send them the stored password.
            self.add_error("bind_password", "Enter the bind password again: Blink sends the "
                           "stored one only to the server and certificate it was saved for.")
        return cleaned

    def parameters(self) -> dict[str, Any]:
        data = self.cleaned_data
        scopes = [line.strip() for line in data.get("scope_dns", "").splitlines() if line.strip()]
        return {
            "url": data["url"], "start_tls": data["start_tls"], "bind_user": data["bind_user"],
            "base_dn": data["base_dn"], "scope_dns": scopes, "ca_pem": data["ca_pem"],
        }


class EntraForm(ConnectionFormBase):
    """An app registration in the client's tenant, proven by a client secret or a certificate.

    The certificate is a file upload (one PEM with the certificate and its private key) rather
    than a text box, so the key is never sent back in the page, not even when the form has
    errors. Exactly one of the two is needed on create; on edit both may stay empty (the stored
    one is kept), and entering one replaces whichever is stored (see ``secrets``).
    """

    secret_fields = ("client_secret", "certificate")

    tenant_id = forms.CharField(
        max_length=100, label="Tenant ID",
        help_text="The directory (tenant) ID of the client's Entra ID, a GUID.",
    )
    client_id = forms.CharField(
        max_length=36, label="Application (client) ID",
        help_text="The app registration Blink uses. It needs the Graph application "
        "permissions Directory.Read.All, RoleManagement.Read.Directory (to tell who is "
        "eligible for an admin role in PIM), User-PasswordProfile.ReadWrite.All and, for "
        "lockout monitoring, AuditLog.Read.All (with an Entra ID P1 or P2 licence); and, to "
        "change passwords, the Entra role User Administrator assigned to the app.",
    )
    client_secret = forms.CharField(
        required=False, max_length=512, label="Client secret", strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The secret's Value (not its Secret ID). Or leave it empty and upload a "
        "certificate instead.",
    )
    certificate = forms.FileField(
        required=False, label="…or a certificate with its private key",
        widget=forms.FileInput(attrs={"accept": ".pem,.crt,.key,.txt"}),
        help_text="One PEM file (at most 64 kB) holding the certificate and its unencrypted "
        "RSA private key, 2048 bits or more. Add the certificate alone (without the key) to the "
        "app registration's Certificates & secrets.",
    )
    queue = _queue_field()
    monitor_lockouts = forms.BooleanField(required=False, initial=True,
                                          label="Watch for account lockouts")

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, editing=editing, **kwargs)
        # Either credential will do; clean() asks for exactly one.
        for name in self.secret_fields:
            self.fields[name].required = False
        if editing:
            self.fields["client_secret"].help_text = (
                "Stored encrypted and never shown. Leave this and the certificate empty to keep "
                "what is stored; a new secret replaces the stored secret or certificate.")
            self.fields["certificate"].help_text = (
                "Stored encrypted and never shown. A new certificate (one PEM with its private "
                "key) replaces the stored secret or certificate.")

    def _guid(self, name: str) -> str:
        value: str = self.cleaned_data[name].strip()
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise forms.ValidationError("Enter the ID as a GUID, e.g. "
                                        "72f988bf-86f1-41af-91ab-2d7cd011db47.") from None

    def clean_tenant_id(self) -> str:
        return self._guid("tenant_id")

    def clean_client_id(self) -> str:
        return self._guid("client_id")

    def clean_client_secret(self) -> str:
        secret: str = self.cleaned_data.get("client_secret") or ""
        if secret and not secret.strip():
            raise forms.ValidationError("The secret cannot be only spaces.")
        return secret

    def clean_certificate(self) -> str:
        """The uploaded certificate and key, checked as Entra ID needs them, as one PEM."""
        # Imported here: the adapter (and msal) load only where a directory is used.
        from directory.base import DirectoryError
        from directory.entra import certificate_credential_parse

        upload: UploadedFile | None = self.cleaned_data.get("certificate")
        if not upload:
            return ""
        if (upload.size or 0) > CERTIFICATE_MAX_BYTES:
            raise forms.ValidationError("A certificate file is at most 64 kB.")
        try:
            text = upload.read(CERTIFICATE_MAX_BYTES + 1).decode("utf-8")
        except UnicodeDecodeError:
            raise forms.ValidationError(
                "This file is not PEM text. For a .pfx file, convert it first: openssl pkcs12 "
                "-in blink.pfx -out blink.pem -nodes.") from None
        try:
            return certificate_credential_parse(text).pem()
        except DirectoryError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        if "client_secret" in self.errors or "certificate" in self.errors:
            return cleaned
        secret, certificate = cleaned.get("client_secret"), cleaned.get("certificate")
        if secret and certificate:
            self.add_error("certificate", "Give a client secret or a certificate, not both.")
        elif not secret and not certificate and not self.editing:
            self.add_error("client_secret", "Enter the app registration's client secret, or "
                           "upload its certificate with the private key.")
        return cleaned

    def parameters(self) -> dict[str, Any]:
        return {"tenant_id": self.cleaned_data["tenant_id"],
                "client_id": self.cleaned_data["client_id"]}

    def secrets(self) -> dict[str, str | None]:
        """``client_secret`` and/or ``certificate_pem``, as connection_save merges them.

        Empty values keep what is stored. A new credential on edit comes with None for the
        other one, which removes it, so switching between a secret and a certificate leaves
        exactly one in use.
        """
        secret = self.cleaned_data.get("client_secret") or ""
        certificate = self.cleaned_data.get("certificate") or ""
        values: dict[str, str | None] = {"client_secret": secret, "certificate_pem": certificate}
        if self.editing and secret:
            values["certificate_pem"] = None
        elif self.editing and certificate:
            values["client_secret"] = None
        return values


FORMS: dict[str, type[ConnectionFormBase]] = {
    "active_directory": ActiveDirectoryForm,
    "entra": EntraForm,
}
