"""Entra ID (Azure AD) over msal and Microsoft Graph v1.0.

The adapter signs in as the client's app registration with the client-credentials grant,
proving itself with a client secret or with a certificate (msal signs a PS256 client assertion
with the certificate's private key; see ``CertificateCredential``). msal caches the token; a
Graph 401 drops it and retries once. The adapter talks to Graph through a
``requests.Session`` it owns: ``trust_env=False`` so REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and
proxy variables never override the connection's own CA (a proxy is configured instead:
``proxy``), a timeout on every call, and the same session handed to msal. The session and
the msal app are created on first use, never at import (Celery forks its workers after
importing), and again in a forked child.

Graph application permissions the app needs (with admin consent):

- Directory.Read.All: users, groups, transitive members, role assignments (snapshot,
  get_user, is_protected);
- RoleManagement.Read.Directory: PIM role eligibilities (snapshot, is_protected); a tenant
  without Entra ID P2 has no PIM, and Graph says so;
- User-PasswordProfile.ReadWrite.All (or User.ReadWrite.All): reset_password, which also
  needs the Entra role User Administrator assigned to the app itself (Graph's rule for
  app-only password changes);
- AuditLog.Read.All, and an Entra ID P1/P2 licence in the tenant: locked_out;
- optionally Member.Read.Hidden: the members of groups with hidden membership (without it
  such a group syncs empty, and the sync says so).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from msal.exceptions import MsalServiceError

from directory.base import (
    DirectoryError,
    DirectoryUser,
    Group,
    PasswordPolicy,
    Snapshot,
)

logger = logging.getLogger(__name__)

# Blink refuses to reset anyone who holds an Entra role, built-in or custom, directly or
# through a role-assignable group: Entra itself treats every role holder as an administrator
# for password reset (the admin SSPR policy), and a fixed list of "privileged" roles goes out
# of date as Microsoft adds roles. Someone only eligible for a role in PIM counts too: they
# can activate it whenever they like, so a password for them is a password for an admin.

USER_FIELDS = (
    "id", "userPrincipalName", "displayName", "givenName", "surname", "mail", "mobilePhone",
    "accountEnabled", "onPremisesSyncEnabled", "onPremisesImmutableId",
)

# Entra's smart lockout: sign-ins refused with AADSTS50053 while the account is locked.
LOCKOUT_ERROR_CODE = 50053
# A lockout lasts a minute at first and grows with repeated failures; a sign-in refused as
# locked this recently is taken to mean the account is still locked.
LOCKOUT_WINDOW = timedelta(minutes=15)

# Throttled requests are retried at most this many times before giving up for now.
MAX_THROTTLED_ATTEMPTS = 5
# Graph accepts at most 15 values in one `in (...)` filter.
FILTER_IN_LIMIT = 15

READ_PERMISSION = "Directory.Read.All"
ROLES_PERMISSION = "RoleManagement.Read.Directory (or Directory.Read.All)"
ELIGIBILITY_PERMISSION = "RoleManagement.Read.Directory"
# Graph's answer to the PIM endpoints in a tenant without Entra ID P2 (or ID Governance):
# there is no PIM there, so nobody is eligible for anything.
NO_PIM_LICENCE = "AadPremiumLicenseRequired"
RESET_PERMISSION = "User-PasswordProfile.ReadWrite.All (or User.ReadWrite.All)"
# Graph changes passwords for an app only when the app also holds an Entra role.
RESET_ROLE = ("Changing passwords also needs the Entra role User Administrator assigned to "
              "the app itself: in the Entra admin center, Roles and administrators, User "
              "Administrator, Add assignments, then the app.")
AUDIT_PERMISSION = "AuditLog.Read.All"

LOCKOUT_UNAVAILABLE = (
    "Lockout monitoring needs an Entra ID P1 or P2 licence for this tenant; "
    "Blink will not poll it."
)

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TOKEN_BAD_SECRET = {7000215, 7000222, 7000216}
_TOKEN_UNKNOWN_APP = {700016}
_TOKEN_UNKNOWN_TENANT = {90002}
# The certificate is not registered on the app, expired there, or the signature did not verify.
_TOKEN_BAD_CERTIFICATE = {700027}
# The client assertion is outside its valid time: the signer's clock is off.
_TOKEN_ASSERTION_TIME = {700024}
_TRANSIENT_TOKEN_ERRORS = {"temporarily_unavailable", "server_error"}


# Entra ID refuses RSA keys shorter than this in client assertions (AADSTS700027).
MIN_RSA_BITS = 2048

_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN ((?:RSA |EC |ENCRYPTED )?)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----",
    re.DOTALL)


@dataclass(frozen=True)
class EntraSettings:
    """How to reach one client's Entra tenant.

    The app proves itself with exactly one of ``client_secret`` and ``certificate_pem`` (one
    PEM text holding the certificate registered on the app and its unencrypted private key).
    ``ca_bundle`` is a PEM file path; empty means requests' default trust store (certifi).
    ``proxy``: an HTTP proxy's URL for sign-in and Graph (settings.BLINK_HTTPS_PROXY).
    """

    tenant_id: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    certificate_pem: str = field(default="", repr=False)
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_bundle: str = ""
    proxy: str = field(default="", repr=False)  # its URL may carry a password
    timeout: float = 15
    max_retry_wait: float = 60
    page_size: int = 999


@dataclass(frozen=True)
class CertificateCredential:
    """An app registration's certificate and its private key, checked and ready for msal.

    Built by ``certificate_credential_parse``. ``certificate_pem`` is the certificate alone
    (the one whose public key matches the private key, when the PEM carried a chain);
    ``thumbprint`` is its SHA-1 thumbprint in upper-case hex, as the Entra admin center shows
    it under Certificates & secrets.
    """

    certificate_pem: str
    private_key_pem: str = field(repr=False)
    thumbprint: str
    not_after: datetime

    def msal_credential(self) -> dict[str, str]:
        """``client_credential`` for msal: the key and the certificate, no SHA-1 thumbprint.

        Given the certificate rather than a thumbprint, msal (1.35 and later) signs PS256
        assertions carrying ``x5t#S256``, the format the identity platform documents today;
        msal calls the SHA-1 ``thumbprint`` route deprecated. On this route msal also sends the
        certificate in the ``x5c`` header; Entra finds the registered one by its thumbprint.
        """
        return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}

    def pem(self) -> str:
        """The certificate followed by its private key, the form Blink stores."""
        return self.certificate_pem + self.private_key_pem


def certificate_credential_parse(text: str) -> CertificateCredential:
    """Read a PEM holding a certificate and its private key, as Entra ID will need them.

    Refuses, with a sentence that says what to do (``DirectoryError(code="config")``): text
    without a certificate or without a private key, an encrypted or unreadable key, a key that
    is not RSA of at least 2048 bits (what Entra accepts), a key that belongs to none of the
    certificates, and a certificate outside its validity period. The key never appears in a
    message.
    """
    data = text.strip().encode("utf-8", errors="replace")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise _config_error(
            "The certificate for Entra ID is not a PEM certificate: use one PEM file holding "
            "the certificate (BEGIN CERTIFICATE) and its private key (BEGIN PRIVATE KEY).")
    blocks = [m.group(0) for m in _PRIVATE_KEY_BLOCK.finditer(data.decode("utf-8"))]
    if not blocks:
        raise _config_error(
            "The certificate for Entra ID comes without its private key: put the certificate "
            "and its private key (BEGIN PRIVATE KEY) in one PEM file.")
    if len(blocks) > 1:
        raise _config_error(
            "The certificate file for Entra ID holds more than one private key: keep only the "
            "key that belongs to the certificate.")
    try:
        key = serialization.load_pem_private_key(blocks[0].encode(), password=None)
    except TypeError:
        raise _config_error(
            "The private key of the certificate for Entra ID is protected by a passphrase: "
            "export it without one (openssl pkey -in key.pem -out key-plain.pem) and try "
            "again.") from None
    except (ValueError, UnsupportedAlgorithm):
        raise _config_error(
            "The private key of the certificate for Entra ID cannot be read: export it again "
            "as PEM (BEGIN PRIVATE KEY).") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _config_error(
            "Entra ID app sign-in with a certificate needs an RSA key, and this certificate's "
            "key is not RSA: create an RSA certificate of 2048 bits or more.")
    if key.key_size < MIN_RSA_BITS:
        raise _config_error(
            f"The certificate's RSA key has {key.key_size} bits and Entra ID requires at least "
            f"{MIN_RSA_BITS}: create a new certificate with a longer key.")
    public = key.public_key().public_numbers()

    def belongs(candidate: x509.Certificate) -> bool:
        candidate_key = candidate.public_key()
        return (isinstance(candidate_key, rsa.RSAPublicKey)
                and candidate_key.public_numbers() == public)

    certificate = next((c for c in certificates if belongs(c)), None)
    if certificate is None:
        raise _config_error(
            "The private key in the file does not belong to the certificate: put the "
            "certificate together with its own private key.")
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 (Entra's id)
    moment = datetime.now(UTC)
    if certificate.not_valid_after_utc <= moment:
        raise _config_error(
            f"The certificate {thumbprint} expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d}: create a new one, add it to the app "
            "registration's Certificates & secrets and upload it here.")
    if certificate.not_valid_before_utc > moment:
        raise _config_error(
            f"The certificate {thumbprint} is not valid before "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; use it from then on, or "
            "check the clock of the machine that created it.")
    return CertificateCredential(
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode(),
        thumbprint=thumbprint,
        not_after=certificate.not_valid_after_utc,
    )


def _config_error(sentence: str) -> DirectoryError:
    return DirectoryError(sentence, permanent=True, code="config")


class _GraphFailure(Exception):
    """A Graph answer that is an error after retries; turned into a DirectoryError by callers."""

    def __init__(self, status: int, code: str, message: str, request_id: str) -> None:
        super().__init__(f"HTTP {status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id

    @classmethod
    def from_response(cls, response: requests.Response) -> _GraphFailure:
        code, message = "", ""
        try:
            error = response.json().get("error") or {}
            if isinstance(error, dict):
                code, message = str(error.get("code") or ""), str(error.get("message") or "")
        except ValueError:
            pass
        return cls(response.status_code, code, message,
                   response.headers.get("request-id", ""))


class _MsalHttpClient:
    """The adapter's session as msal's ``http_client``, with a timeout on every call."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self._session = session
        self._timeout = timeout

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return self._session.get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return self._session.post(url, **kwargs)

    def close(self) -> None:
        # The adapter owns the session and closes it itself.
        pass


class _SignIn:
    """This process's HTTP session, msal app and token cache for one ``EntraSettings``,
    shared by every adapter built with them. ``directory_for`` builds an adapter per task;
    with its own msal app each would fetch the tenant's metadata and a new token, two more
    round trips to the identity platform for every reset and every poll."""

    def __init__(self, settings: EntraSettings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.session: requests.Session | None = None
        self.app: Any = None
        self.token_cache: Any = None
        # The certificate the app signs in with, once read (None: its client secret).
        self.certificate: CertificateCredential | None = None


# One per process and app: (pid, tenant, client id, authority, Graph URL).
_SIGN_INS: dict[tuple[int, str, str, str, str], _SignIn] = {}
_SIGN_INS_LOCK = threading.Lock()


def _sign_in_for(settings: EntraSettings) -> _SignIn:
    # The pid keeps a forked worker from sharing its parent's sockets and tokens.
    key = (os.getpid(), settings.tenant_id, settings.client_id, settings.authority_host,
           settings.graph_url)
    with _SIGN_INS_LOCK:
        held = _SIGN_INS.get(key)
        if held is not None and held.settings == settings:
            return held
        # New, or the app's settings changed (a rotated secret, a renewed certificate):
        # the old sign-in goes, rather than lingering with its secret for the process's life.
        fresh = _SIGN_INS[key] = _SignIn(settings)
    if held is not None:
        with held.lock:
            if held.session is not None:
                held.session.close()
    return fresh


def sign_ins_close_all() -> None:
    """Close this process's Graph sessions and forget its tokens (worker shutdown, tests)."""
    with _SIGN_INS_LOCK:
        held = [sign_in for key, sign_in in _SIGN_INS.items() if key[0] == os.getpid()]
        _SIGN_INS.clear()
    for sign_in in held:
        with sign_in.lock:
            if sign_in.session is not None:
                sign_in.session.close()


def _ad_object_id(immutable_id: object) -> str:
    """The objectGUID of the AD account an Entra Connect user is synced from, from its
    ``onPremisesImmutableId``: the GUID's 16 bytes in AD's little-endian order, in base64,
    when the source anchor is objectGUID or ms-DS-ConsistencyGuid copied from it. Any other
    anchor (an employee number, say) names no AD account Blink can find: "" then."""
    if not isinstance(immutable_id, str) or not immutable_id:
        return ""
    try:
        raw = base64.b64decode(immutable_id, validate=True)
    except binascii.Error:
        return ""
    if len(raw) != 16:
        return ""
    return str(uuid.UUID(bytes_le=raw))


class EntraDirectory:
    """One client's Entra ID tenant, as Blink uses it (implements ``directory.base.Directory``).

    Entra has no OUs: snapshots carry users and groups only. Users synchronised from
    on-premises AD (``onPremisesSyncEnabled``) are listed, with the objectGUID of the AD account
    they come from (``onPremisesImmutableId``), but their passwords are not set here.
    """

    lockout_start_exact = False
    unlocks = False

    def __init__(self, settings: EntraSettings) -> None:
        # No network here: the session and the sign-in come on first use (``_SignIn``).
        self.settings = settings
        # Replaced in tests to observe waits without sleeping.
        self.sleep: Callable[[float], None] = time.sleep

    @property
    def _sign_in(self) -> _SignIn:
        return _sign_in_for(self.settings)

    # ------------------------------------------------------------------ protocol

    def test_connection(self) -> str:
        """Sign in and read the tenant's organization; say which tenant was reached."""
        org = next(self._pages(self._url("organization"), permission=READ_PERMISSION,
                               params={"$select": "id,displayName"}), {})
        tenant = org.get("id") or self.settings.tenant_id
        name = org.get("displayName") or tenant
        certificate = self._sign_in.certificate
        proof = (f" with certificate {certificate.thumbprint} (valid until "
                 f"{certificate.not_after:%Y-%m-%d})" if certificate is not None else "")
        return (f"Connected to the Entra ID tenant “{name}” ({tenant}) "
                f"as app {self.settings.client_id}{proof}.")

    def snapshot(self) -> Snapshot:
        """Every user and group (members resolved through nesting); Entra has no OUs.

        Calls: the user pages, the group pages, one paged transitiveMembers query per group,
        the tenant's role definitions and their assignments, and its PIM eligibilities; never
        one call per user.
        """
        top = self._page_size()
        raw_users = list(self._pages(
            self._url("users"), permission=READ_PERMISSION,
            params={"$select": ",".join(USER_FIELDS), "$top": top}))
        raw_groups = list(self._pages(
            self._url("groups"), permission=READ_PERMISSION,
            params={"$select": "id,displayName,description,visibility", "$top": top}))
        members: dict[str, frozenset[str]] = {}
        hidden: list[str] = []
        for group in raw_groups:
            found = self._user_members(group)
            if found is None:
                hidden.append(group.get("displayName") or group["id"])
            members[group["id"]] = found or frozenset()
        user_ids = {u["id"] for u in raw_users}
        protected: set[str] = set()
        for principal in self._privileged_principals() | self._eligible_principals():
            if principal in user_ids:
                protected.add(principal)
            elif principal in members:
                protected |= members[principal]
        users = [self._user(u, protected=u["id"] in protected) for u in raw_users]
        groups = [
            Group(object_id=g["id"], name=g.get("displayName") or "",
                  description=g.get("description") or "", member_ids=members[g["id"]])
            for g in raw_groups
        ]
        logger.info("Entra snapshot of tenant %s: %d users (%d protected), %d groups",
                    self.settings.tenant_id, len(users), len(protected & user_ids), len(groups))
        notes: tuple[str, ...] = ()
        if hidden:
            shown = ", ".join(sorted(hidden)[:5]) + (" …" if len(hidden) > 5 else "")
            notes = (f"{len(hidden)} group{'s' * (len(hidden) != 1)} with hidden membership "
                     f"({shown}) show no members: Blink's app may not read them without the "
                     "Microsoft Graph application permission Member.Read.Hidden.",)
        return Snapshot(org_units=[], groups=groups, users=users, notes=notes)

    def get_user(self, object_id: str) -> DirectoryUser:
        """One user by Graph id; ``DirectoryError(code="not_found")`` if there is none."""
        raw = self._get_user(object_id, USER_FIELDS)
        return self._user(raw, protected=self.is_protected(object_id))

    def password_policy(self, object_id: str | None = None) -> PasswordPolicy:
        """Entra's fixed cloud password policy, the same for every cloud user.

        8 to 256 characters, three of the four kinds (lower case, upper case, digits,
        symbols), checked against the banned-password list; no history for admin resets.
        Smart lockout locks after 10 failures for at least a minute. Entra does not publish a
        per-tenant policy through Graph, so nothing is fetched.
        """
        return PasswordPolicy(
            min_length=8, complexity=True, history_length=0, max_length=256,
            lockout_threshold=10, lockout_duration=timedelta(seconds=60),
        )

    def reset_password(
        self, object_id: str, new_password: str, *, must_change: bool = True, unlock: bool = False
    ) -> None:
        """Set a new password with one ``PATCH /users/{id}``.

        Refuses, before writing: an empty password, privileged users (``protected``) and users
        synchronised from on-premises AD (``on_premises``: their password lives there). A reset
        also clears Entra's smart lockout, so ``unlock`` needs nothing more.
        """
        if not new_password or not new_password.strip():
            raise DirectoryError("The new password is empty; Blink did not send it to Entra ID.",
                                 permanent=True, code="policy")
        user = self._get_user(object_id, ("id", "userPrincipalName", "onPremisesSyncEnabled"))
        # Checked first, so a synced admin is never handed on to the on-premises AD path.
        if self.is_protected(object_id):
            raise DirectoryError(
                f"{user.get('userPrincipalName') or object_id} holds an Entra ID role, or is "
                "eligible for one in PIM, so is an administrator; Blink does not reset "
                "passwords of administrators.",
                permanent=True, code="protected")
        if user.get("onPremisesSyncEnabled"):
            raise DirectoryError(
                f"The password of {user.get('userPrincipalName') or object_id} lives in the "
                "client's on-premises Active Directory (the account is synchronised to Entra ID); "
                "reset it through the client's Active Directory connection.",
                permanent=True, code="on_premises")
        body = {"passwordProfile": {"password": new_password,
                                    "forceChangePasswordNextSignIn": must_change}}
        try:
            self._request("PATCH", self._url(f"users/{object_id}"), json_body=body)
        except _GraphFailure as failure:
            if failure.status == 400 and "password" in failure.message.lower():
                raise DirectoryError(
                    "Entra ID refused the new password because it does not meet the tenant's "
                    "password rules (at least 8 characters with three of upper case, lower case, "
                    "digits and symbols, and not a banned password); try a different one.",
                    permanent=True, code="policy") from None
            raise self._explain(failure, RESET_PERMISSION, "change passwords",
                                also=RESET_ROLE) from None
        logger.info("Entra password reset for user %s in tenant %s (must change: %s)",
                    object_id, self.settings.tenant_id, must_change)

    def unlock(self, object_id: str) -> None:
        """Not offered by Entra ID: there is no unlock operation in Graph."""
        raise DirectoryError(
            "Entra ID has no way to unlock an account on its own: smart lockout ends by itself "
            "after a short time, and a password reset clears it straight away.",
            permanent=True, code="not_supported")

    def locked_out(self, object_ids: Iterable[str]) -> dict[str, datetime]:
        """Which of these users Entra's smart lockout refused recently, with the latest
        refusal: the log tells when sign-ins were refused, not when a lockout began, and the
        latest is what tells a lockout from one a reset already ended
        (``lockout_start_exact`` is False).

        One paged query of the tenant's sign-in logs for error 50053 in the last
        ``LOCKOUT_WINDOW``. A tenant without a P1/P2 licence gets
        ``DirectoryError(code="lockout_unavailable")``: show monitoring as unavailable.
        """
        wanted = set(object_ids)
        if not wanted:
            return {}
        since = datetime.now(UTC) - LOCKOUT_WINDOW
        params: dict[str, Any] = {
            "$filter": (f"createdDateTime ge {since:%Y-%m-%dT%H:%M:%SZ} and "
                        f"status/errorCode eq {LOCKOUT_ERROR_CODE}"),
            "$top": self._page_size(),
        }
        locked: dict[str, datetime] = {}
        try:
            for entry in self._pages(self._url("auditLogs/signIns"), params=params,
                                     permission=AUDIT_PERMISSION, raise_failures=True):
                user_id = entry.get("userId")
                at = _parse_time(entry.get("createdDateTime"))
                if user_id in wanted and at is not None:
                    locked[user_id] = max(at, locked.get(user_id, at))
        except _GraphFailure as failure:
            if failure.code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant":
                raise DirectoryError(LOCKOUT_UNAVAILABLE, permanent=True,
                                     code="lockout_unavailable") from None
            raise self._explain(failure, AUDIT_PERMISSION, "read sign-in logs") from None
        return locked

    def is_protected(self, object_id: str) -> bool:
        """Whether the user holds an Entra role, or is eligible for one in PIM, directly or
        through a role-assignable group.

        Three calls in the common case: the user's groups (transitive), the active role
        assignments of the user and its role-assignable groups (15 principals per query), and
        the PIM eligibilities of each of them (Graph filters those one principal at a time).
        """
        self._check_id(object_id)
        try:
            groups = list(self._pages(
                self._url(f"users/{object_id}/transitiveMemberOf/microsoft.graph.group"),
                params={"$select": "id,isAssignableToRole", "$top": self._page_size()},
                permission=READ_PERMISSION, raise_failures=True))
        except _GraphFailure as failure:
            if failure.status == 404:
                raise self._not_found(object_id) from None
            raise self._explain(failure, READ_PERMISSION, "read group memberships") from None
        principals = [object_id] + [g["id"] for g in groups if g.get("isAssignableToRole")]
        for start in range(0, len(principals), FILTER_IN_LIMIT):
            chunk = principals[start:start + FILTER_IN_LIMIT]
            listed = ",".join(f"'{p}'" for p in chunk)
            for assignment in self._pages(
                self._url("roleManagement/directory/roleAssignments"),
                params={"$filter": f"principalId in ({listed})"},
                permission=ROLES_PERMISSION,
            ):
                if assignment.get("roleDefinitionId"):
                    return True
        return bool(self._eligible_principals(principals))

    def close(self) -> None:
        """Close this process's HTTP session for these settings, shared with every adapter
        built with them; the next call opens a new one (and signs in again)."""
        sign_in = self._sign_in
        with sign_in.lock:
            if sign_in.session is not None:
                sign_in.session.close()
            sign_in.session = None
            sign_in.app = None
            sign_in.token_cache = None

    # ------------------------------------------------------------------ reading helpers

    def _get_user(self, object_id: str, fields: Iterable[str]) -> dict[str, Any]:
        self._check_id(object_id)
        try:
            response = self._request("GET", self._url(f"users/{object_id}"),
                                     params={"$select": ",".join(fields)})
        except _GraphFailure as failure:
            if failure.status == 404:
                raise self._not_found(object_id) from None
            raise self._explain(failure, READ_PERMISSION, "read users") from None
        return self._json(response)

    def _user_members(self, group: dict[str, Any]) -> frozenset[str] | None:
        """The users in a group, through nesting (transitiveMembers lists groups too); None
        for a group with hidden membership that the app may not read."""
        group_id = group["id"]
        try:
            return frozenset(
                m["id"] for m in self._pages(
                    self._url(f"groups/{group_id}/transitiveMembers"),
                    permission=READ_PERMISSION, raise_failures=True,
                    params={"$select": "id", "$top": self._page_size()})
                if m.get("@odata.type") == "#microsoft.graph.user"
            )
        except _GraphFailure as failure:
            if failure.status == 404:
                # Deleted since the group list was read: it has no members now.
                return frozenset()
            if failure.status == 403 and group.get("visibility") == "HiddenMembership":
                # Member.Read.Hidden is needed for these; the rest of the sync stands.
                return None
            raise self._explain(failure, READ_PERMISSION, "read group members") from None

    def _privileged_principals(self) -> set[str]:
        """Ids of users and groups with an active assignment of any Entra role.

        Graph's reference has long required a filter on the directory's role assignments,
        so the tenant's role definitions (built-in and custom) come first, and their
        assignments are asked for 15 at a time: about ten calls for a tenant.
        """
        roles = [definition["id"] for definition in self._pages(
            self._url("roleManagement/directory/roleDefinitions"),
            params={"$select": "id"}, permission=ROLES_PERMISSION) if definition.get("id")]
        principals: set[str] = set()
        for start in range(0, len(roles), FILTER_IN_LIMIT):
            listed = ",".join(f"'{r}'" for r in roles[start:start + FILTER_IN_LIMIT])
            for assignment in self._pages(
                self._url("roleManagement/directory/roleAssignments"),
                params={"$filter": f"roleDefinitionId in ({listed})"},
                permission=ROLES_PERMISSION,
            ):
                if assignment.get("principalId"):
                    principals.add(assignment["principalId"])
        return principals

    def _eligible_principals(self, among: list[str] | None = None) -> set[str]:
        """Ids of users and groups eligible for an Entra role in PIM: of ``among``, or of
        the whole tenant. Empty in a tenant without the licence PIM needs. A permission
        that is missing raises, so nobody is reset while Blink cannot tell."""
        filters: list[str | None] = [None] if among is None else [
            f"principalId eq '{principal}'" for principal in among]
        eligible: set[str] = set()
        try:
            for expression in filters:
                for schedule in self._pages(
                    self._url("roleManagement/directory/roleEligibilitySchedules"),
                    params={"$filter": expression} if expression else None,
                    permission=ELIGIBILITY_PERMISSION, raise_failures=True,
                ):
                    if schedule.get("principalId"):
                        eligible.add(schedule["principalId"])
        except _GraphFailure as failure:
            if failure.code == NO_PIM_LICENCE:
                return set()
            raise self._explain(failure, ELIGIBILITY_PERMISSION,
                                "read who is eligible for Entra roles (PIM)") from None
        return eligible

    @staticmethod
    def _user(raw: dict[str, Any], *, protected: bool) -> DirectoryUser:
        upn = raw.get("userPrincipalName") or ""
        return DirectoryUser(
            object_id=raw["id"],
            username=upn,
            upn=upn,
            display_name=raw.get("displayName") or "",
            given_name=raw.get("givenName") or "",
            surname=raw.get("surname") or "",
            email=raw.get("mail") or "",
            mobile=raw.get("mobilePhone") or "",
            enabled=raw.get("accountEnabled") is not False,
            protected=protected,
            on_premises_sync=bool(raw.get("onPremisesSyncEnabled")),
            on_premises_id=_ad_object_id(raw.get("onPremisesImmutableId")),
        )

    def _check_id(self, object_id: str) -> None:
        # Graph ids are GUIDs; anything else could not name a user and must not reach a URL
        # path or a $filter.
        if not isinstance(object_id, str) or not _GUID.fullmatch(object_id):
            raise self._not_found(object_id)

    def _not_found(self, object_id: str) -> DirectoryError:
        return DirectoryError(
            f"No user with id {object_id!r} exists in the Entra ID tenant "
            f"{self.settings.tenant_id}; it may have been deleted.",
            permanent=True, code="not_found")

    def _page_size(self) -> int:
        return max(1, min(int(self.settings.page_size), 999))

    def _url(self, path: str) -> str:
        return f"{self.settings.graph_url.rstrip('/')}/{path}"

    # ------------------------------------------------------------------ HTTP and tokens

    def _http(self) -> requests.Session:
        sign_in = self._sign_in
        with sign_in.lock:
            if sign_in.session is None:
                session = requests.Session()
                session.trust_env = False
                session.verify = self.settings.ca_bundle or True
                if self.settings.proxy:
                    session.proxies = {"http": self.settings.proxy,
                                       "https": self.settings.proxy}
                session.headers["User-Agent"] = "Blink (Entra ID adapter)"
                sign_in.session = session
                sign_in.app = None
                sign_in.token_cache = None
            return sign_in.session

    def _client(self) -> Any:
        """The msal app, built on first use (its construction fetches the tenant's metadata)."""
        session = self._http()
        sign_in = self._sign_in
        with sign_in.lock:
            if sign_in.app is not None:
                return sign_in.app
            tenant = self.settings.tenant_id.strip()
            if not tenant or not re.fullmatch(r"[A-Za-z0-9.-]+", tenant):
                raise DirectoryError(
                    "The tenant id on this connection is not valid: use the Directory (tenant) "
                    "ID GUID or the tenant's .onmicrosoft.com domain.",
                    permanent=True, code="tenant_not_found")
            credential = self._credential()
            authority = f"{self.settings.authority_host.rstrip('/')}/{tenant}"
            cache = msal.TokenCache()
            try:
                app = msal.ConfidentialClientApplication(
                    self.settings.client_id,
                    client_credential=credential,
                    authority=authority,
                    token_cache=cache,
                    http_client=_MsalHttpClient(session, self.settings.timeout),
                    # Tenant metadata comes straight from the authority host: no detour to
                    # login.microsoftonline.com's instance discovery.
                    instance_discovery=False,
                )
            except ValueError as exc:
                raise self._authority_error(str(exc)) from None
            except MsalServiceError:
                raise self._sign_in_unavailable() from None
            except (requests.RequestException, OSError) as exc:
                raise self._network_error(exc, self.settings.authority_host) from None
            sign_in.app, sign_in.token_cache = app, cache
            return app

    def _credential(self) -> str | dict[str, str]:
        """What msal proves the app's identity with: the secret, or the certificate and key.

        Checked before anything goes on the wire, so a connection with both, neither or an
        unusable certificate fails with a sentence and no sign-in attempt.
        """
        secret = self.settings.client_secret
        certificate = self.settings.certificate_pem
        if secret and certificate.strip():
            raise _config_error(
                "This Entra ID connection has both a client secret and a certificate; Blink "
                "signs in with exactly one. Edit the connection and enter only one of them.")
        sign_in = self._sign_in
        if secret:
            sign_in.certificate = None
            return secret
        if not certificate.strip():
            raise _config_error(
                "This Entra ID connection has neither a client secret nor a certificate: edit "
                "it and enter the app registration's client secret, or upload its "
                "certificate with the private key.")
        sign_in.certificate = certificate_credential_parse(certificate)
        logger.info("Entra sign-in for app %s in tenant %s uses certificate %s",
                    self.settings.client_id, self.settings.tenant_id,
                    sign_in.certificate.thumbprint)
        return sign_in.certificate.msal_credential()

    def _scope(self) -> str:
        parts = urlsplit(self.settings.graph_url)
        return f"{parts.scheme}://{parts.netloc}/.default"

    def _token(self) -> str:
        app = self._client()
        try:
            result = app.acquire_token_for_client(scopes=[self._scope()])
        except (requests.RequestException, OSError) as exc:
            raise self._network_error(exc, self.settings.authority_host) from None
        except (MsalServiceError, ValueError):
            # msal raises these for a 5xx or a non-JSON answer from the token endpoint.
            raise self._sign_in_unavailable() from None
        if isinstance(result, dict) and result.get("access_token"):
            return str(result["access_token"])
        raise self._token_error(result if isinstance(result, dict) else {})

    def _drop_token(self) -> None:
        sign_in = self._sign_in
        with sign_in.lock:
            cache = sign_in.token_cache
            if cache is None:
                return
            for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(item)

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> requests.Response:
        """One Graph call: bearer token, 429/503 retried per Retry-After, one token refresh.

        Returns 2xx answers; raises ``_GraphFailure`` for other Graph errors and
        ``DirectoryError`` for network, TLS, token and throttling failures.
        """
        refreshed = False
        throttled = 0
        waited = 0.0
        while True:
            headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
            try:
                response = self._http().request(method, url, params=params, json=json_body,
                                                 headers=headers, timeout=self.settings.timeout)
            except (requests.RequestException, OSError) as exc:
                raise self._network_error(exc, self.settings.graph_url) from None
            status = response.status_code
            if status == 401 and not refreshed:
                # Expired or revoked before msal's clock said so: sign in again, once.
                logger.info("Graph refused the token for tenant %s; getting a new one",
                            self.settings.tenant_id)
                refreshed = True
                self._drop_token()
                continue
            # Throttled or busy: wait and ask again. Other server errors (Graph gives 500,
            # 502 and 504 on large member pages now and then) are asked again only for a
            # read: a write may have been done.
            if status in (429, 503) or (method == "GET" and status in (500, 502, 504)):
                throttled += 1
                delay = _retry_after(response, throttled)
                budget = self.settings.max_retry_wait
                if throttled >= MAX_THROTTLED_ATTEMPTS or waited + delay > budget:
                    logger.warning("Graph throttled tenant %s (%s %s answered %d); giving up",
                                   self.settings.tenant_id, method, urlsplit(url).path, status)
                    raise DirectoryError(
                        f"Microsoft Graph is busy or throttling Blink for this tenant (HTTP "
                        f"{status}); Blink will try again later.",
                        permanent=False, code="throttled")
                logger.info("Graph throttled tenant %s (%d); retrying in %.1f s",
                            self.settings.tenant_id, status, delay)
                self.sleep(delay)
                waited += delay
                continue
            if status >= 400:
                failure = _GraphFailure.from_response(response)
                logger.info("Graph answered %d %s for %s %s in tenant %s (request-id %s)",
                            status, failure.code, method, urlsplit(url).path,
                            self.settings.tenant_id, failure.request_id)
                raise failure
            return response

    def _pages(
        self,
        url: str,
        *,
        permission: str,
        params: dict[str, Any] | None = None,
        raise_failures: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a Graph collection, following ``@odata.nextLink`` to the end.

        Graph failures become DirectoryErrors unless ``raise_failures`` (the caller maps them).
        """
        origin = _origin(self.settings.graph_url)
        next_url: str | None = url
        next_params = params
        while next_url:
            try:
                response = self._request("GET", next_url, params=next_params)
            except _GraphFailure as failure:
                if raise_failures:
                    raise
                raise self._explain(failure, permission, "read the directory") from None
            body = self._json(response)
            yield from body.get("value") or []
            next_url = body.get("@odata.nextLink")
            # The link already carries every query option.
            next_params = None
            if next_url and _origin(next_url) != origin:
                # Never send the tenant's token anywhere but the configured Graph host.
                raise DirectoryError(
                    "Microsoft Graph answered with a next-page link to another host; Blink "
                    "stopped reading rather than send its token there.",
                    permanent=True, code="bad_response")

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise DirectoryError(
                "Microsoft Graph sent an answer Blink could not read; try again later.",
                permanent=False, code="bad_response")
        return body

    # ------------------------------------------------------------------ errors as sentences

    def _explain(self, failure: _GraphFailure, permission: str, action: str,
                 also: str = "") -> DirectoryError:
        tenant = self.settings.tenant_id
        if failure.status == 401:
            return DirectoryError(
                f"Microsoft Graph refused Blink's access token for tenant {tenant} even after a "
                "fresh sign-in; check that the app registration belongs to this tenant.",
                permanent=True, code="bad_credentials")
        if failure.code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant":
            return DirectoryError(LOCKOUT_UNAVAILABLE, permanent=True,
                                  code="lockout_unavailable")
        if failure.status == 403:
            return DirectoryError(
                f"Blink's app registration is not allowed to {action} in tenant {tenant}: grant "
                f"it the Microsoft Graph application permission {permission} and have an "
                "administrator consent to it." + (f" {also}" if also else ""),
                permanent=True, code="insufficient_rights")
        if failure.status == 404:
            return DirectoryError(
                f"Microsoft Graph found nothing at that address in tenant {tenant}; the object "
                "may have been deleted.", permanent=True, code="not_found")
        if failure.status >= 500:
            return DirectoryError(
                f"Microsoft Graph had a problem (HTTP {failure.status}); Blink will try again "
                "later.", permanent=False, code="unavailable")
        return DirectoryError(
            f"Microsoft Graph refused the request (HTTP {failure.status}"
            f"{', ' + failure.code if failure.code else ''}); Blink's request did not change "
            "anything.", permanent=True, code="bad_request")

    def _token_error(self, result: dict[str, Any]) -> DirectoryError:
        codes = set(result.get("error_codes") or [])
        error = str(result.get("error") or "")
        tenant, client = self.settings.tenant_id, self.settings.client_id
        logger.warning("Entra sign-in failed for app %s in tenant %s: %s %s",
                       client, tenant, error, sorted(codes))
        certificate = self._sign_in.certificate
        if certificate is not None and codes & _TOKEN_ASSERTION_TIME:
            return DirectoryError(
                "Entra ID refused Blink's signed sign-in request as outside its valid time: "
                "the clock of the machine running Blink's worker is wrong; set it right "
                "(NTP). Blink will try again later.", permanent=False, code="clock")
        if certificate is not None and (codes & _TOKEN_BAD_CERTIFICATE
                                        or error == "invalid_client"):
            return DirectoryError(
                f"Entra ID did not accept the certificate {certificate.thumbprint} of app "
                f"{client}: add the certificate (without its private key) to the app "
                "registration's Certificates & secrets, or check that it has not expired or "
                "been removed there.", permanent=True, code="bad_credentials")
        if codes & _TOKEN_BAD_SECRET or error == "invalid_client":
            return DirectoryError(
                f"Entra ID rejected the client secret of app {client}: it is wrong or has "
                "expired. Create a new client secret for Blink's app registration and enter its "
                "Value (not its Secret ID) on this connection.",
                permanent=True, code="bad_credentials")
        if codes & _TOKEN_UNKNOWN_APP:
            return DirectoryError(
                f"No app registration with client id {client} exists in tenant {tenant}; check "
                "the Application (client) ID on this connection and that the app is consented "
                "in this tenant.", permanent=True, code="bad_credentials")
        if codes & _TOKEN_UNKNOWN_TENANT or error == "invalid_tenant":
            return self._tenant_not_found()
        if error in _TRANSIENT_TOKEN_ERRORS:
            return self._sign_in_unavailable()
        first = min(codes) if codes else None
        return DirectoryError(
            f"Entra ID refused to sign Blink's app {client} in to tenant {tenant} "
            f"({error or 'unknown error'}{f', AADSTS{first}' if first else ''}).",
            permanent=True, code="bad_credentials")

    def _sign_in_unavailable(self) -> DirectoryError:
        logger.warning("Entra sign-in service unavailable for tenant %s", self.settings.tenant_id)
        return DirectoryError(
            f"Entra ID's sign-in service at {urlsplit(self.settings.authority_host).netloc} is "
            "busy or unavailable; Blink will try again later.",
            permanent=False, code="unavailable")

    def _tenant_not_found(self) -> DirectoryError:
        return DirectoryError(
            f"Entra ID has no tenant {self.settings.tenant_id}; check the Directory (tenant) ID "
            "on this connection.", permanent=True, code="tenant_not_found")

    def _authority_error(self, text: str) -> DirectoryError:
        if "AADSTS90002" in text or "invalid_tenant" in text:
            return self._tenant_not_found()
        logger.warning("Entra authority %s could not be used: %s", self.settings.authority_host,
                       text[:300])
        return DirectoryError(
            f"Blink could not read the sign-in settings of tenant {self.settings.tenant_id} from "
            f"{self.settings.authority_host}; check the tenant id and the authority address.",
            permanent=True, code="tenant_not_found")

    def _network_error(self, exc: BaseException, address: str) -> DirectoryError:
        host = urlsplit(address).netloc or address
        if isinstance(exc, requests.exceptions.SSLError):
            trusted = ("the CA certificate configured on this connection"
                       if self.settings.ca_bundle else "the system's trusted authorities")
            return DirectoryError(
                f"Blink could not verify the TLS certificate of {host} against {trusted}; "
                "check the CA certificate on this connection (or the network's TLS inspection).",
                permanent=True, code="certificate")
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            return DirectoryError(
                f"The address {address} on this connection is not a valid URL.",
                permanent=True, code="bad_configuration")
        if isinstance(exc, requests.RequestException):
            logger.warning("Could not reach %s for tenant %s: %s", host, self.settings.tenant_id,
                           type(exc).__name__)
            return DirectoryError(
                f"Blink could not reach {host}; check the worker's network access. Blink will "
                "try again later.", permanent=False, code="unreachable")
        # OSError from requests itself: the CA bundle file cannot be read.
        return DirectoryError(
            f"The CA certificate file configured on this connection ({self.settings.ca_bundle}) "
            "cannot be read.", permanent=True, code="certificate")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _retry_after(response: requests.Response, attempt: int) -> float:
    """Seconds Graph asked us to wait; exponential backoff when it did not say."""
    value = (response.headers.get("Retry-After") or "").strip()
    if value:
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return float(2 ** (attempt - 1))


def _parse_time(value: Any) -> datetime | None:
    """Graph's ISO 8601 UTC times, which may carry seven fractional digits."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", value)
    if not match:
        return None
    fraction = (match[2] or "")[:7]
    zone = match[3] or "Z"
    moment = datetime.fromisoformat(f"{match[1]}{fraction}{'+00:00' if zone == 'Z' else zone}")
    return moment.astimezone(UTC)
