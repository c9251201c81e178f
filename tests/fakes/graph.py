"""A local stand-in for the Microsoft identity platform and Microsoft Graph v1.0.

It speaks HTTPS on 127.0.0.1 with its own CA (written to a temporary file), so the real
msal and requests run against it unchanged. It serves only what Blink's Entra adapter uses,
in the published shapes:

- ``/{tenant}/v2.0/.well-known/openid-configuration`` and ``/{tenant}/oauth2/v2.0/token``
  (client credentials with the client secret or a certificate-signed client assertion, RFC 7523:
  PS256 with ``x5t#S256`` or RS256 with ``x5t``, verified against the certificates registered
  with ``register_certificate``; AADSTS7000215, 700016, 700021, 700023, 700024, 700027 and 90002
  errors as Entra words them);
- Graph ``/v1.0``: ``organization``, ``users`` (``$select``, ``$top`` up to 999, paging through
  absolute ``@odata.nextLink`` URLs with a ``$skiptoken``), ``users/{id}`` (GET, PATCH with
  ``passwordProfile``), ``users/{id}/transitiveMemberOf[/microsoft.graph.group]``, ``groups``,
  ``groups/{id}/transitiveMembers``, ``roleManagement/directory/roleAssignments`` (``$filter`` on
  principalId / roleDefinitionId with ``eq`` or ``in``),
  ``roleManagement/directory/roleEligibilitySchedules`` (PIM; ``$filter`` on principalId or
  roleDefinitionId with ``eq``; 400 AadPremiumLicenseRequired without Entra ID P2),
  ``auditLogs/signIns`` (``$filter`` on createdDateTime and status/errorCode).

Knobs (``FakeGraph.knobs``) throttle the next N Graph requests (429/503 with Retry-After),
revoke issued tokens, withdraw application permissions (403 Authorization_RequestDenied),
remove the P1/P2 licence (403 on sign-in logs) or the P2 licence PIM needs, and reject
passwords. Every request is recorded
without its Authorization value, client secret, client assertion or password; each accepted
client assertion is described in ``assertions``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
import secrets
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tests.fakes.tls import TLSServer, generate_ca, pem, server_certificate

# Built-in role template ids, from the Microsoft Entra built-in roles reference.
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
USER_ADMINISTRATOR = "fe930be7-5e62-47db-91af-98c3a49a38b1"
HELPDESK_ADMINISTRATOR = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
PASSWORD_ADMINISTRATOR = "966707d0-3269-4727-9be2-8c3a10f19b9d"
DIRECTORY_READERS = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"  # read-only, a role all the same
# The tenant's built-in role definitions (a real tenant has about 130; a few dozen here, so
# that asking for their assignments takes more than one query of 15).
BUILT_IN_ROLES = [GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR, USER_ADMINISTRATOR,
                  HELPDESK_ADMINISTRATOR, PASSWORD_ADMINISTRATOR, DIRECTORY_READERS,
                  *(str(uuid.UUID(int=n)) for n in range(1, 30))]

# Application permissions a freshly consented Blink app holds in the stand-in.
DEFAULT_PERMISSIONS = frozenset({
    "Organization.Read.All",
    "User.Read.All",
    "GroupMember.Read.All",
    "Directory.Read.All",
    "RoleManagement.Read.Directory",
    "AuditLog.Read.All",
    "User-PasswordProfile.ReadWrite.All",
})

# Any one of these lets the app call the endpoint (least privileged first), as in the Graph docs.
_READ_USERS = ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All")
_READ_GROUPS = ("GroupMember.Read.All", "Group.Read.All", "Directory.Read.All")
_READ_ROLES = ("RoleManagement.Read.Directory", "RoleManagement.Read.All", "Directory.Read.All")
# PIM eligibilities: Directory.Read.All is not enough.
_READ_ELIGIBILITIES = ("RoleEligibilitySchedule.Read.Directory",
                       "RoleEligibilitySchedule.ReadWrite.Directory", "RoleManagement.Read.All",
                       "RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory")
_READ_ORG = ("Organization.Read.All", "User.Read.All", "Directory.Read.All")
_READ_SIGNINS = ("AuditLog.Read.All",)
_WRITE_PASSWORD = ("User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All",
                   "Directory.ReadWrite.All")

_DEFAULT_USER_FIELDS = ("businessPhones", "displayName", "givenName", "jobTitle", "mail",
                        "mobilePhone", "officeLocation", "preferredLanguage", "surname",
                        "userPrincipalName", "id")
_MAX_TOP = 999
_MAX_SIGNIN_TOP = 1000
_DEFAULT_TOP = 100
_MAX_IN_VALUES = 15
_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# How far the identity platform lets a client assertion's exp and nbf miss its own clock.
_ASSERTION_SKEW = 300


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class ClientCertificate:
    """A self-signed app certificate with its key, as an admin would make one for Blink."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def certificate_pem(self) -> str:
        """The public part, what the admin uploads to the app registration."""
        return pem(self.certificate).decode()

    @property
    def private_key_pem(self) -> str:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

    @property
    def pem(self) -> str:
        """Certificate and private key in one PEM, what Blink is given."""
        return self.certificate_pem + self.private_key_pem

    @property
    def thumbprint(self) -> str:
        """SHA-1 thumbprint in upper-case hex, as the Entra admin center shows it."""
        return self.certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303


def generate_client_certificate(
    common_name: str = "Blink Graph access",
    *,
    key_size: int = 2048,
    elliptic: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> ClientCertificate:
    """A self-signed certificate like ``New-SelfSignedCertificate`` or ``openssl req -x509``
    makes: RSA (``key_size`` bits) unless ``elliptic``, valid from an hour ago for a year
    unless told otherwise."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if elliptic
        else rsa.generate_private_key(public_exponent=65537, key_size=key_size))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(hours=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return ClientCertificate(cert, key)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_client_assertion(
    credential: ClientCertificate,
    *,
    audience: str,
    client_id: str,
    algorithm: str = "PS256",
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
) -> str:
    """A client assertion (RFC 7523) signed with ``credential``'s key, for tests that need one
    msal would never send. ``header`` and ``claims`` override the defaults (None removes)."""
    now = int(time.time())
    thumbprint = (hashes.SHA256() if algorithm == "PS256" else hashes.SHA1())  # noqa: S303
    head: dict[str, Any] = {
        "alg": algorithm, "typ": "JWT",
        "x5t#S256" if algorithm == "PS256" else "x5t":
            _b64url(credential.certificate.fingerprint(thumbprint)),
    }
    body: dict[str, Any] = {"aud": audience, "iss": client_id, "sub": client_id,
                            "jti": str(uuid.uuid4()), "nbf": now, "iat": now, "exp": now + 600}
    head = {k: v for k, v in {**head, **(header or {})}.items() if v is not None}
    body = {k: v for k, v in {**body, **(claims or {})}.items() if v is not None}
    signing_input = (f"{_b64url(json.dumps(head).encode())}."
                     f"{_b64url(json.dumps(body).encode())}").encode()
    key = credential.key
    assert isinstance(key, rsa.RSAPrivateKey), "client assertions are signed with RSA keys"
    signature = key.sign(signing_input, _assertion_padding(algorithm), hashes.SHA256())
    return f"{signing_input.decode()}.{_b64url(signature)}"


def _assertion_padding(algorithm: str) -> padding.AsymmetricPadding:
    # PS256 (RFC 7518 3.5): PSS with MGF1-SHA256 and a salt as long as the hash.
    if algorithm == "PS256":
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return padding.PKCS1v15()


# ---------------------------------------------------------------------------------------------
# State


@dataclass
class RecordedRequest:
    """One request as the stand-in saw it, minus every secret."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    # Graph JSON bodies with passwordProfile.password replaced; token requests' form fields
    # without client_secret.
    body: Any = None
    status: int = 0

    @property
    def is_token_request(self) -> bool:
        return self.path.endswith("/oauth2/v2.0/token")

    @property
    def is_graph(self) -> bool:
        return self.path.startswith("/v1.0/")


@dataclass(frozen=True)
class SignedAssertion:
    """A client assertion the token endpoint accepted: how it was signed, by which certificate."""

    algorithm: str
    # "x5t#S256" or "x5t": the header that named the certificate.
    thumbprint_header: str
    # SHA-1 thumbprint (upper-case hex) of the registered certificate that verified it.
    thumbprint: str
    # The x5c header was sent, and its first certificate is that one.
    sent_x5c: bool
    x5c_is_signer: bool


@dataclass
class Knobs:
    """Switches a test flips to make the stand-in misbehave the way Entra does."""

    # Answers for the next Graph requests, consumed in order: (status, Retry-After or None).
    throttle: list[tuple[int, str | None]] = field(default_factory=list)
    # The same for the next token requests (the identity platform's own throttling/outages).
    token_throttle: list[tuple[int, str | None]] = field(default_factory=list)
    # Application permissions granted to the app (with admin consent).
    permissions: set[str] = field(default_factory=lambda: set(DEFAULT_PERMISSIONS))
    # Entra roles assigned to the app itself. App-only password resets need the permission
    # AND at least User Administrator (Privileged Authentication Administrator for users
    # who hold admin roles).
    app_roles: set[str] = field(default_factory=lambda: {"User Administrator"})
    # The tenant holds an Entra ID P1/P2 licence (sign-in logs need one).
    premium: bool = True
    # The tenant holds Entra ID P2 (or Governance), which PIM needs: without it Graph answers
    # 400 AadPremiumLicenseRequired to the role eligibility endpoints.
    pim: bool = True
    # Reject every new password as a policy violation, whatever it is.
    reject_passwords: bool = False
    token_lifetime: int = 3599
    # After this many more Graph requests, every token issued so far stops working
    # (a token expiring in the middle of a multi-page read).
    revoke_tokens_after: int | None = None
    # Statuses for the next PATCH requests only (a write that meets a server error).
    patch_failures: list[int] = field(default_factory=list)
    # Origin used in @odata.nextLink (None: this server). Lets a test hand out a foreign link.
    next_link_origin: str | None = None


@dataclass
class GraphData:
    """The tenant's directory: seed it through the add_* methods."""

    organization_name: str = "Globex Corporation"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    # id -> {"id", "displayName", "description", "isAssignableToRole", "members": [ids]}
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    role_assignments: list[dict[str, Any]] = field(default_factory=list)
    # PIM: principals eligible to activate a role (unifiedRoleEligibilitySchedule).
    role_eligibilities: list[dict[str, Any]] = field(default_factory=list)
    # Role definition ids: the built-in ones, and custom ones as roles are assigned.
    role_definitions: list[str] = field(default_factory=lambda: list(BUILT_IN_ROLES))
    sign_ins: list[dict[str, Any]] = field(default_factory=list)
    # user id -> every passwordProfile Graph accepted for that user (kept in memory only).
    passwords_set: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add_user(
        self,
        upn: str,
        *,
        display_name: str = "",
        given_name: str | None = None,
        surname: str | None = None,
        mail: str | None = None,
        mobile: str | None = None,
        enabled: bool = True,
        synced: bool = False,
        object_id: str | None = None,
        on_premises_id: str | None = None,
    ) -> dict[str, Any]:
        """Add a user the way Graph describes one; ``synced`` marks an Entra Connect user,
        synced from the AD object whose objectGUID is ``on_premises_id`` (made up unless
        given). Entra Connect anchors it with ``onPremisesImmutableId``: the objectGUID's
        bytes as AD stores them (little-endian), in base64."""
        immutable_id = None
        if synced:
            guid = uuid.UUID(on_premises_id) if on_premises_id else uuid.uuid4()
            immutable_id = base64.b64encode(guid.bytes_le).decode("ascii")
        user: dict[str, Any] = {
            "id": object_id or str(uuid.uuid4()),
            "userPrincipalName": upn,
            "displayName": display_name or upn.split("@")[0],
            "givenName": given_name,
            "surname": surname,
            "mail": mail,
            "mobilePhone": mobile,
            "businessPhones": [],
            "jobTitle": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "accountEnabled": enabled,
            # Graph answers null, not false, for cloud-only users.
            "onPremisesSyncEnabled": True if synced else None,
            "onPremisesImmutableId": immutable_id,
        }
        self.users[user["id"]] = user
        return user

    def add_users(self, count: int, *, domain: str = "globex.example") -> list[dict[str, Any]]:
        """Add ``count`` ordinary cloud users named user00001@domain onwards."""
        start = len(self.users)
        return [
            self.add_user(f"user{start + n:05d}@{domain}", given_name="User",
                          surname=f"{start + n:05d}", mail=f"user{start + n:05d}@{domain}")
            for n in range(1, count + 1)
        ]

    def add_group(
        self,
        name: str,
        members: Iterable[str] = (),
        *,
        description: str | None = None,
        role_assignable: bool = False,
        hidden_membership: bool = False,
    ) -> dict[str, Any]:
        """Add a group whose direct members are these user or group ids. Only an app with
        Member.Read.Hidden may list the members of one with ``hidden_membership``."""
        group: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "displayName": name,
            "description": description,
            "isAssignableToRole": role_assignable,
            "visibility": "HiddenMembership" if hidden_membership else "Private",
            "members": list(members),
        }
        self.groups[group["id"]] = group
        return group

    def assign_role(self, principal_id: str, role_template_id: str,
                    scope: str = "/") -> dict[str, Any]:
        """An active assignment of a built-in role (its definition id is its template id)."""
        assignment = {
            "id": secrets.token_urlsafe(24),
            "principalId": principal_id,
            "roleDefinitionId": role_template_id,
            "directoryScopeId": scope,
        }
        self.role_assignments.append(assignment)
        if role_template_id not in self.role_definitions:
            self.role_definitions.append(role_template_id)  # a custom role
        return assignment

    def make_eligible(self, principal_id: str, role_template_id: str) -> dict[str, Any]:
        """A PIM eligibility for a built-in role, with no end: the principal may activate
        the role whenever it likes."""
        schedule = {
            "id": secrets.token_urlsafe(24),
            "principalId": principal_id,
            "roleDefinitionId": role_template_id,
            "directoryScopeId": "/",
            "appScopeId": None,
            "memberType": "Direct",
            "status": "Provisioned",
            "createdUsing": secrets.token_urlsafe(24),
            "createdDateTime": _iso(dt.datetime.now(dt.UTC)),
            "modifiedDateTime": None,
            "scheduleInfo": {"startDateTime": _iso(dt.datetime.now(dt.UTC)),
                             "recurrence": None,
                             "expiration": {"type": "noExpiration", "endDateTime": None,
                                            "duration": None}},
        }
        self.role_eligibilities.append(schedule)
        return schedule

    def add_sign_in(self, user_id: str, *, error_code: int = 50053,
                    at: dt.datetime | None = None) -> dict[str, Any]:
        """A sign-in log entry; 50053 is Entra's "account is locked" (smart lockout)."""
        user = self.users.get(user_id, {})
        reason = ("Account is locked because user tried to sign in too many times with an "
                  "incorrect user ID or password." if error_code == 50053 else "")
        entry = {
            "id": str(uuid.uuid4()),
            "createdDateTime": _iso(at or _now()),
            "userDisplayName": user.get("displayName"),
            "userPrincipalName": user.get("userPrincipalName"),
            "userId": user_id,
            "appId": "00000002-0000-0ff1-ce00-000000000000",
            "appDisplayName": "Office 365 Exchange Online",
            "ipAddress": "203.0.113.7",
            "clientAppUsed": "Browser",
            "status": {"errorCode": error_code, "failureReason": reason,
                       "additionalDetails": None},
        }
        self.sign_ins.append(entry)
        return entry

    def members_of(self, group_id: str) -> list[str]:
        """Every member of the group, through nesting (users and groups), without repeats."""
        seen: list[str] = []
        stack = list(reversed(self.groups[group_id]["members"]))
        while stack:
            member = stack.pop()
            if member in seen or member == group_id:
                continue
            seen.append(member)
            if member in self.groups:
                stack.extend(reversed(self.groups[member]["members"]))
        return seen

    def groups_of(self, object_id: str) -> list[str]:
        """Every group the object belongs to, directly or through nesting."""
        return [gid for gid in self.groups if object_id in self.members_of(gid)]


@dataclass
class _Token:
    client_id: str
    expires_at: dt.datetime
    revoked: bool = False


class _GraphFault(Exception):
    """Raised inside a handler to answer with a Graph (or identity platform) error."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


# ---------------------------------------------------------------------------------------------
# The server


class FakeGraph:
    """The identity platform and Graph for one tenant, on https://127.0.0.1:<port>."""

    def __init__(self) -> None:
        self.tenant_id = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.client_secret = "Xy8Q~" + secrets.token_urlsafe(30)
        self.data = GraphData()
        self.knobs = Knobs()
        self.requests: list[RecordedRequest] = []
        self.tokens: dict[str, _Token] = {}
        # Certificates registered on the app (its keyCredentials), and assertions accepted.
        self.certificates: list[x509.Certificate] = []
        self.assertions: list[SignedAssertion] = []
        self.lock = threading.RLock()
        self._tempdir = tempfile.TemporaryDirectory(prefix="fake-graph-")
        ca_key, ca_cert = generate_ca("Blink fake Graph CA")
        key, cert = server_certificate(ca_key, ca_cert)
        self.ca_bundle = os.path.join(self._tempdir.name, "ca.pem")
        with open(self.ca_bundle, "wb") as fh:
            fh.write(pem(ca_cert))
        cert_file = os.path.join(self._tempdir.name, "server.pem")
        with open(cert_file, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
            fh.write(pem(cert))
        self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ssl_context.load_cert_chain(cert_file)
        self._server: TLSServer[FakeGraph] | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle

    def start(self) -> FakeGraph:
        self._server = TLSServer(("127.0.0.1", 0), _Handler, self, self.ssl_context)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-graph", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._tempdir.cleanup()

    def reset(self) -> None:
        """Forget data, knobs, tokens and the request log (between tests)."""
        with self.lock:
            self.data = GraphData()
            self.knobs = Knobs()
            self.requests = []
            self.tokens = {}
            self.certificates = []
            self.assertions = []

    # -- addresses

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority_host(self) -> str:
        return self.origin

    @property
    def graph_url(self) -> str:
        return f"{self.origin}/v1.0"

    # -- knobs that need more than an attribute

    def throttle(self, count: int, *, status: int = 429, retry_after: str | None = "1") -> None:
        """Answer the next ``count`` Graph requests with ``status`` (429, 503, or another
        5xx such as Graph's occasional 500/502/504) and this Retry-After."""
        with self.lock:
            self.knobs.throttle.extend([(status, retry_after)] * count)

    def throttle_tokens(self, count: int, *, status: int = 503,
                        retry_after: str | None = "1") -> None:
        """Answer the next ``count`` token requests with ``status`` (an identity outage)."""
        with self.lock:
            self.knobs.token_throttle.extend([(status, retry_after)] * count)

    def register_certificate(self, certificate: str | bytes | ClientCertificate) -> str:
        """Add a certificate (its public part) to the app registration; its SHA-1 thumbprint.

        The client secret keeps working too, as in Entra, where an app may hold both.
        """
        if isinstance(certificate, ClientCertificate):
            cert = certificate.certificate
        else:
            data = certificate.encode() if isinstance(certificate, str) else certificate
            cert = x509.load_pem_x509_certificate(data)
        with self.lock:
            self.certificates.append(cert)
        return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working (Graph answers 401)."""
        with self.lock:
            for token in self.tokens.values():
                token.revoked = True

    # -- what tests read

    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_token_request]

    def graph_requests(self, method: str | None = None,
                       path: str | None = None) -> list[RecordedRequest]:
        """Graph calls, optionally of one method and whose path starts with ``path``."""
        return [
            r for r in self.requests
            if r.is_graph and (method is None or r.method == method)
            and (path is None or r.path.startswith(path))
        ]


_TENANT_PATH = re.compile(r"^/(?P<tenant>[^/]+)/(?P<rest>v2\.0/\.well-known/openid-configuration"
                          r"|oauth2/v2\.0/token)$")
_GUID = r"[0-9a-fA-F-]{36}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, delayed ACKs cost 40 ms a call.
    disable_nagle_algorithm = True
    server: TLSServer[FakeGraph]
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeGraph:
        return self.server.fake

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- plumbing

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {
            k: ("<redacted>" if k.lower() == "authorization" else v)
            for k, v in self.headers.items()
        }
        record = RecordedRequest(method=method, path=path, query=query, headers=headers)
        with self.fake.lock:
            self.fake.requests.append(record)
        try:
            if path.startswith("/v1.0/"):
                status, body, extra = self._graph(method, path, query, raw, record)
            else:
                status, body, extra = self._identity(method, path, raw, record)
        except _GraphFault as fault:
            status, extra = fault.status, fault.headers
            body = self._fault_body(fault, path)
        record.status = status
        self._send(status, body, extra)

    def _fault_body(self, fault: _GraphFault, path: str) -> dict[str, Any]:
        if path.startswith("/v1.0/"):
            return {"error": {"code": fault.code, "message": fault.message, "innerError": {
                "date": _iso(_now()), "request-id": str(uuid.uuid4()),
                "client-request-id": self.headers.get("client-request-id") or str(uuid.uuid4()),
            }}}
        codes = [int(c) for c in re.findall(r"AADSTS(\d+)", fault.message)[:1]]
        trace = str(uuid.uuid4())
        return {
            "error": fault.code,
            "error_description": f"{fault.message} Trace ID: {trace} Correlation ID: "
                                 f"{uuid.uuid4()} Timestamp: {_now():%Y-%m-%d %H:%M:%SZ}",
            "error_codes": codes,
            "timestamp": f"{_now():%Y-%m-%d %H:%M:%SZ}",
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
            "error_uri": f"{self.fake.origin}/error?code={codes[0] if codes else 0}",
        }

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("request-id", str(uuid.uuid4()))
        if status == 204:
            self.end_headers()
            return
        payload = json.dumps(body).encode()
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    # -- identity platform

    def _identity(self, method: str, path: str, raw: bytes,
                  record: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        match = _TENANT_PATH.match(path)
        if not match:
            raise _GraphFault(404, "not_found", "AADSTS90002: no such endpoint.")
        tenant = match["tenant"]
        fake = self.fake
        if match["rest"].startswith("v2.0"):
            if method != "GET":
                raise _GraphFault(405, "invalid_request", "AADSTS900561: GET expected.")
            if tenant.lower() != fake.tenant_id:
                raise _GraphFault(400, "invalid_tenant", self._tenant_not_found(tenant))
            return 200, self._openid_configuration(), {}
        if method != "POST":
            raise _GraphFault(405, "invalid_request",
                              "AADSTS900561: The endpoint only accepts POST requests.")
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        record.body = {k: v for k, v in form.items()
                       if k not in ("client_secret", "client_assertion")}
        with fake.lock:
            queued = fake.knobs.token_throttle.pop(0) if fake.knobs.token_throttle else None
        if queued is not None:
            status, retry_after = queued
            raise _GraphFault(status, "temporarily_unavailable",
                              "AADSTS90033: A transient error has occurred. Please try again.",
                              {"Retry-After": retry_after} if retry_after is not None else {})
        if tenant.lower() != fake.tenant_id:
            raise _GraphFault(400, "invalid_request", self._tenant_not_found(tenant))
        if form.get("grant_type") != "client_credentials":
            raise _GraphFault(400, "unsupported_grant_type",
                              "AADSTS70003: The app requested an unsupported grant type.")
        client_id = form.get("client_id", "")
        if client_id != fake.client_id:
            raise _GraphFault(400, "unauthorized_client",
                              f"AADSTS700016: Application with identifier '{client_id}' was not "
                              f"found in the directory '{fake.data.organization_name}'. This "
                              "can happen if the application has not been installed by the "
                              "administrator of the tenant or consented to by any user in the "
                              "tenant. You may have sent your authentication request to the "
                              "wrong tenant.")
        if "client_assertion" in form or "client_assertion_type" in form:
            if "client_secret" in form:
                raise _GraphFault(400, "invalid_request",
                                  "AADSTS50148: Present either a client secret or a client "
                                  "assertion, not both.")
            if form.get("client_assertion_type") != JWT_BEARER or not form.get(
                    "client_assertion"):
                raise _GraphFault(400, "invalid_request",
                                  "AADSTS90014: The required field 'client_assertion' or "
                                  "'client_assertion_type' is missing from the credential. "
                                  "Ensure that you have all the necessary parameters for the "
                                  "login request.")
            self._verify_assertion(form["client_assertion"], tenant, client_id)
        elif not secrets.compare_digest(form.get("client_secret", ""), fake.client_secret):
            raise _GraphFault(401, "invalid_client",
                              "AADSTS7000215: Invalid client secret provided. Ensure the secret "
                              "being sent in the request is the client secret value, not the "
                              "client secret ID, for a secret added to app "
                              f"'{fake.client_id}'.")
        scope = form.get("scope", "")
        if not any(s.endswith("/.default") for s in scope.split()):
            raise _GraphFault(400, "invalid_scope",
                              f"AADSTS1002012: The provided value for scope {scope} is not "
                              "valid. Client credential flows must have a scope value with "
                              "/.default suffixed to the resource identifier "
                              "(application ID URI).")
        token = secrets.token_urlsafe(48)
        with fake.lock:
            lifetime = fake.knobs.token_lifetime
            fake.tokens[token] = _Token(client_id, _now() + dt.timedelta(seconds=lifetime))
        return 200, {"token_type": "Bearer", "expires_in": lifetime,
                     "ext_expires_in": lifetime, "access_token": token}, {}

    def _verify_assertion(self, assertion: str, tenant: str, client_id: str) -> None:
        """Check a client assertion as the identity platform does; record it if it passes.

        The signature is verified with the registered certificate the header's thumbprint
        names (PS256 or RS256), then aud (this tenant's token endpoint), iss = sub = client id,
        jti, and exp/nbf within five minutes of the clock.
        """
        fake = self.fake
        malformed = "AADSTS50027: JWT token is invalid or malformed."
        parts = assertion.split(".")
        if len(parts) != 3:
            raise _GraphFault(401, "invalid_client", malformed)
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, binascii.Error):
            raise _GraphFault(401, "invalid_client", malformed) from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise _GraphFault(401, "invalid_client", malformed)
        algorithm = header.get("alg")
        if algorithm not in ("PS256", "RS256"):
            raise _GraphFault(401, "invalid_client",
                              f"{malformed} [Reason - the signing algorithm {algorithm!r} is "
                              "not supported.]")
        digest: hashes.HashAlgorithm
        if "x5t#S256" in header:
            named_by, digest = "x5t#S256", hashes.SHA256()
        elif "x5t" in header:
            named_by, digest = "x5t", hashes.SHA1()  # noqa: S303
        else:
            raise _GraphFault(401, "invalid_client",
                              "AADSTS700027: Client assertion contains an invalid signature. "
                              "[Reason - No certificate thumbprint specified in token "
                              "header.]")
        named = str(header[named_by])
        try:
            # Compared decoded: msal sends the thumbprint base64url-encoded with its "=" padding.
            wanted = _b64url_decode(named.rstrip("="))
        except (ValueError, binascii.Error):
            wanted = b""
        shown = wanted.hex().upper() or named

        def invalid(reason: str) -> _GraphFault:
            return _GraphFault(
                401, "invalid_client",
                f"AADSTS700027: Client assertion contains an invalid signature. [Reason - "
                f"{reason}, Thumbprint of key used by client: '{shown}', Please visit the Azure "
                "Portal, Graph Explorer or directly use MS Graph to see configured keys for app "
                f"Id '{client_id}'.]")

        with fake.lock:
            certificate = next((c for c in fake.certificates
                                if c.fingerprint(digest) == wanted), None)
        if certificate is None:
            raise invalid("The key was not found.")
        if not certificate.not_valid_before_utc <= _now() < certificate.not_valid_after_utc:
            raise invalid("The key used is expired.")
        public = certificate.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise invalid("The key is not an RSA key.")
        if public.key_size < 2048:
            raise invalid(f"RSA key size {public.key_size} is less than the minimum "
                          "required 2048 bits")
        try:
            public.verify(signature, f"{parts[0]}.{parts[1]}".encode(),
                          _assertion_padding(algorithm), hashes.SHA256())
        except InvalidSignature:
            raise invalid("The provided signature value did not match the expected "
                          "signature value.") from None
        if claims.get("aud") != f"{fake.origin}/{tenant}/oauth2/v2.0/token":
            raise _GraphFault(401, "invalid_client",
                              "AADSTS700023: Client assertion audience claim does not match "
                              "Realm issuer.")
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise _GraphFault(401, "invalid_client",
                              "AADSTS700021: Client assertion application identifier doesn't "
                              "match 'client_id' parameter.")
        if not claims.get("jti"):
            raise _GraphFault(401, "invalid_client",
                              f"{malformed} [Reason - the jti claim is missing.]")
        now = time.time()
        expires, not_before = claims.get("exp"), claims.get("nbf", 0)
        if (not isinstance(expires, int | float) or not isinstance(not_before, int | float)
                or expires + _ASSERTION_SKEW <= now or not_before - _ASSERTION_SKEW > now):
            raise _GraphFault(401, "invalid_client",
                              "AADSTS700024: Client assertion is not within its valid time "
                              f"range. Current time: {_iso(_now())}.")
        chain = header.get("x5c")
        signer_der = certificate.public_bytes(serialization.Encoding.DER)
        try:
            x5c_is_signer = (isinstance(chain, list) and bool(chain)
                             and base64.b64decode(chain[0]) == signer_der)
        except (TypeError, ValueError, binascii.Error):
            x5c_is_signer = False
        with fake.lock:
            fake.assertions.append(SignedAssertion(
                algorithm=algorithm, thumbprint_header=named_by,
                thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
                sent_x5c=bool(chain), x5c_is_signer=x5c_is_signer))

    def _tenant_not_found(self, tenant: str) -> str:
        return (f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the "
                "correct tenant ID and are signing into the correct cloud. Check with your "
                "subscription administrator, this may happen if there are no active "
                "subscriptions for the tenant.")

    def _openid_configuration(self) -> dict[str, Any]:
        base = f"{self.fake.origin}/{self.fake.tenant_id}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{self.fake.origin}/{self.fake.tenant_id}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.fake.origin}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": urlsplit(self.fake.origin).netloc,
            "rbac_url": "https://pas.windows.net",
        }

    # -- Graph

    def _graph(self, method: str, path: str, query: dict[str, str], raw: bytes,
               record: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        fake = self.fake
        with fake.lock:
            queued = fake.knobs.throttle.pop(0) if fake.knobs.throttle else None
            if fake.knobs.revoke_tokens_after is not None:
                if fake.knobs.revoke_tokens_after <= 0:
                    fake.knobs.revoke_tokens_after = None
                    fake.revoke_tokens()
                else:
                    fake.knobs.revoke_tokens_after -= 1
        if queued is not None:
            status, retry_after = queued
            code, text = {
                429: ("TooManyRequests", "Too many requests."),
                503: ("ServiceNotAvailable", "Service unavailable, try again later."),
            }.get(status, ("UnknownError", "An error occurred while processing the request."))
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            raise _GraphFault(status, code, text, headers)
        self._authenticate()
        if method == "PATCH":
            body = self._json(raw)
            record.body = _redacted(body)
            with fake.lock:
                failure = fake.knobs.patch_failures.pop(0) if fake.knobs.patch_failures else None
            if failure is not None:
                raise _GraphFault(failure, "UnknownError",
                                  "An error occurred while processing the request.")
        route = path[len("/v1.0"):]
        handlers: list[tuple[str, str, Any]] = [
            ("GET", r"/organization", self._organization),
            ("GET", r"/users", self._users),
            ("GET", r"/users/(?P<key>[^/]+)", self._user),
            ("PATCH", rf"/users/(?P<key>{_GUID})", self._patch_user),
            ("GET", r"/users/(?P<key>[^/]+)/transitiveMemberOf(?P<cast>/microsoft\.graph\.group)?",
             self._member_of),
            ("GET", r"/groups", self._groups),
            ("GET", rf"/groups/(?P<key>{_GUID})/transitiveMembers", self._group_members),
            ("GET", r"/roleManagement/directory/roleAssignments", self._role_assignments),
            ("GET", r"/roleManagement/directory/roleDefinitions", self._role_definitions),
            ("GET", r"/roleManagement/directory/roleEligibilitySchedules",
             self._role_eligibility_schedules),
            ("GET", r"/auditLogs/signIns", self._sign_ins),
        ]
        for verb, pattern, handler in handlers:
            match = re.fullmatch(pattern, route)
            if match and verb == method:
                if method == "PATCH":
                    return handler(match, query, body)
                return handler(match, query)
        raise _GraphFault(400, "BadRequest",
                          f"Resource not found for the segment '{route.strip('/')}'.")

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization") or ""
        challenge = {"WWW-Authenticate": (
            'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
            f'oauth2/authorize", client_id="{_GRAPH_APP_ID}"')}
        if not header.startswith("Bearer ") or not header[7:].strip():
            raise _GraphFault(401, "InvalidAuthenticationToken", "Access token is empty.",
                              challenge)
        with self.fake.lock:
            token = self.fake.tokens.get(header[7:].strip())
        if token is None:
            raise _GraphFault(401, "InvalidAuthenticationToken",
                              "IDX14100: JWT is not well formed.", challenge)
        if token.revoked or token.expires_at <= _now():
            raise _GraphFault(401, "InvalidAuthenticationToken",
                              "Lifetime validation failed, the token is expired.", challenge)

    def _require(self, any_of: tuple[str, ...]) -> None:
        if not self.fake.knobs.permissions.intersection(any_of):
            raise _GraphFault(403, "Authorization_RequestDenied",
                              "Insufficient privileges to complete the operation.")

    @staticmethod
    def _json(raw: bytes) -> Any:
        try:
            return json.loads(raw or b"null")
        except ValueError as exc:
            raise _GraphFault(400, "BadRequest", "Unable to read JSON request payload.") from exc

    def _top(self, query: dict[str, str], maximum: int = _MAX_TOP) -> int:
        text = query.get("$top")
        if text is None:
            return _DEFAULT_TOP
        if not text.isdigit() or not 1 <= int(text) <= maximum:
            raise _GraphFault(400, "Request_UnsupportedQuery",
                              f"Invalid page size specified: '{text}'. Must be between 1 and "
                              f"{maximum} inclusive.")
        return int(text)

    def _page(self, items: list[dict[str, Any]], query: dict[str, str], context: str,
              maximum: int = _MAX_TOP) -> tuple[int, Any, dict[str, str]]:
        """One page of ``items`` and, if more remain, an absolute @odata.nextLink."""
        top = self._top(query, maximum)
        offset = 0
        if "$skiptoken" in query:
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(query["$skiptoken"]))["o"])
            except (ValueError, KeyError, TypeError) as exc:
                raise _GraphFault(400, "Directory_ExpiredPageToken",
                                  "The specified page token value has expired and can no "
                                  "longer be included in your request.") from exc
        body: dict[str, Any] = {
            "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{context}",
            "value": items[offset:offset + top],
        }
        if offset + top < len(items):
            token = base64.urlsafe_b64encode(json.dumps(
                {"o": offset + top, "n": secrets.token_hex(4)}).encode()).decode()
            carried = {k: v for k, v in query.items() if k != "$skiptoken"}
            carried["$skiptoken"] = token
            origin = self.fake.knobs.next_link_origin or self.fake.origin
            path = urlsplit(self.path).path
            body["@odata.nextLink"] = f"{origin}{path}?{urlencode(carried, safe='$,')}"
        return 200, body, {}

    @staticmethod
    def _select(obj: dict[str, Any], query: dict[str, str],
                default: Iterable[str]) -> dict[str, Any]:
        wanted = [f.strip() for f in query["$select"].split(",")] if query.get("$select") \
            else list(default)
        return {f: obj.get(f) for f in wanted if f in obj}

    def _user_or_404(self, key: str) -> dict[str, Any]:
        data = self.fake.data
        user = data.users.get(key) or next(
            (u for u in data.users.values() if u["userPrincipalName"].lower() == key.lower()),
            None)
        if user is None:
            raise _GraphFault(404, "Request_ResourceNotFound",
                              f"Resource '{key}' does not exist or one of its queried "
                              "reference-property objects are not present.")
        return user

    def _organization(self, match: re.Match[str], query: dict[str, str]
                      ) -> tuple[int, Any, dict[str, str]]:
        self._require(_READ_ORG)
        org = {"id": self.fake.tenant_id, "displayName": self.fake.data.organization_name,
               "verifiedDomains": [{"name": "globex.example", "isDefault": True}]}
        return 200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization",
                     "value": [self._select(org, query, org)]}, {}

    def _users(self, match: re.Match[str], query: dict[str, str]
               ) -> tuple[int, Any, dict[str, str]]:
        self._require(_READ_USERS)
        with self.fake.lock:
            users = [self._select(u, query, _DEFAULT_USER_FIELDS)
                     for u in self.fake.data.users.values()]
        return self._page(users, query, "users")

    def _user(self, match: re.Match[str], query: dict[str, str]
              ) -> tuple[int, Any, dict[str, str]]:
        self._require(_READ_USERS)
        with self.fake.lock:
            user = self._user_or_404(match["key"])
            return 200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/"
                         "$entity", **self._select(user, query, _DEFAULT_USER_FIELDS)}, {}

    def _patch_user(self, match: re.Match[str], query: dict[str, str], body: Any
                    ) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(body, dict):
            raise _GraphFault(400, "BadRequest", "Empty Payload. JSON content expected.")
        fake = self.fake
        if "passwordProfile" in body:
            self._require(_WRITE_PASSWORD)
            if not fake.knobs.app_roles & {"User Administrator", "Privileged Authentication "
                                           "Administrator", "Global Administrator"}:
                raise _GraphFault(403, "Authorization_RequestDenied",
                                  "Insufficient privileges to complete the operation.")
        else:
            self._require(("User.ReadWrite.All", "Directory.ReadWrite.All"))
        with fake.lock:
            user = self._user_or_404(match["key"])
            profile = body.get("passwordProfile")
            if profile is not None:
                if user.get("onPremisesSyncEnabled"):
                    raise _GraphFault(400, "Request_BadRequest",
                                      "Unable to update the specified properties for "
                                      "on-premises mastered Directory Sync objects or objects "
                                      "currently undergoing migration.")
                password = profile.get("password") if isinstance(profile, dict) else None
                if not isinstance(password, str) or not password:
                    raise _GraphFault(400, "Request_BadRequest",
                                      "Invalid value specified for property 'password' of "
                                      "resource 'User'.")
                if fake.knobs.reject_passwords or not _meets_cloud_policy(password):
                    raise _GraphFault(400, "Request_BadRequest",
                                      "The specified password does not comply with password "
                                      "complexity requirements. Please provide a different "
                                      "password.")
                fake.data.passwords_set.setdefault(user["id"], []).append({
                    "password": password,
                    "forceChangePasswordNextSignIn":
                        bool(profile.get("forceChangePasswordNextSignIn", False)),
                })
                user["lastPasswordChangeDateTime"] = _iso(_now())
            for name, value in body.items():
                if name != "passwordProfile" and name in user:
                    user[name] = value
        return 204, None, {}

    def _member_of(self, match: re.Match[str], query: dict[str, str]
                   ) -> tuple[int, Any, dict[str, str]]:
        self._require(_READ_USERS)
        self._require(_READ_GROUPS)
        with self.fake.lock:
            user = self._user_or_404(match["key"])
            groups = [
                {"@odata.type": "#microsoft.graph.group",
                 **self._select(self.fake.data.groups[gid], query,
                                ("id", "displayName", "description", "isAssignableToRole"))}
                for gid in self.fake.data.groups_of(user["id"])
            ]
        return self._page(groups, query, "directoryObjects")

    def _groups(self, match: re.Match[str], query: dict[str, str]
                ) -> tuple[int, Any, dict[str, str]]:
        self._require(_READ_GROUPS)
        with self.fake.lock:
            groups = [self._select(g, query, ("id", "displayName", "description",
                                              "isAssignableToRole"))
                      for g in self.fake.data.groups.values()]
        return self._page(groups, query, "groups")

    def _group_members(self, match: re.Match[str], query: dict[str, str]
                       ) -> tuple[int, Any, dict[str, str]]:
        self._require(_READ_GROUPS)
        data = self.fake.data
        with self.fake.lock:
            if match["key"] not in data.groups:
                raise _GraphFault(404, "Request_ResourceNotFound",
                                  f"Resource '{match['key']}' does not exist or one of its "
                                  "queried reference-property objects are not present.")
            if data.groups[match["key"]]["visibility"] == "HiddenMembership":
                self._require(("Member.Read.Hidden",))
            members: list[dict[str, Any]] = []
            for member_id in data.members_of(match["key"]):
                if member_id in data.groups:
                    members.append({"@odata.type": "#microsoft.graph.group",
                                    **self._select(data.groups[member_id], query,
                                                   ("id", "displayName"))})
                elif member_id in data.users:
                    members.append({"@odata.type": "#microsoft.graph.user",
                                    **self._select(data.users[member_id], query,
                                                   _DEFAULT_USER_FIELDS)})
        return self._page(members, query, "directoryObjects")

    def _role_assignments(self, match: re.Match[str], query: dict[str, str]
                          ) -> tuple[int, Any, dict[str, str]]:
        self._require(_READ_ROLES)
        if not query.get("$filter"):
            # As Graph's reference has long said of the directory provider: a filter on
            # principalId or roleDefinitionId is required.
            raise _GraphFault(400, "Request_UnsupportedQuery",
                              "A filter on principalId or roleDefinitionId is required.")
        field_name, values = _parse_assignment_filter(query.get("$filter", ""))
        with self.fake.lock:
            items = [dict(a) for a in self.fake.data.role_assignments
                     if field_name is None or a[field_name] in values]
        return self._page(items, query, "roleManagement/directory/roleAssignments")

    def _role_eligibility_schedules(self, match: re.Match[str], query: dict[str, str]
                                    ) -> tuple[int, Any, dict[str, str]]:
        self._require(_READ_ELIGIBILITIES)
        if not self.fake.knobs.pim:
            raise _GraphFault(400, "AadPremiumLicenseRequired",
                              "The tenant needs to have Microsoft Entra ID P2 or Microsoft "
                              "Entra ID Governance license.")
        expression = query.get("$filter", "")
        if re.search(r"\sin\s*\(", expression):
            raise _unsupported(expression)  # the reference lists eq only
        field_name, values = _parse_assignment_filter(expression)
        with self.fake.lock:
            items = [dict(e) for e in self.fake.data.role_eligibilities
                     if field_name is None or e[field_name] in values]
        return self._page(items, query, "roleManagement/directory/roleEligibilitySchedules")

    def _role_definitions(self, match: re.Match[str], query: dict[str, str]
                          ) -> tuple[int, Any, dict[str, str]]:
        self._require(_READ_ROLES)
        with self.fake.lock:
            items = [{"id": role, "templateId": role} for role in self.fake.data.role_definitions]
        return self._page(items, query, "roleManagement/directory/roleDefinitions")

    def _sign_ins(self, match: re.Match[str], query: dict[str, str]
                  ) -> tuple[int, Any, dict[str, str]]:
        self._require(_READ_SIGNINS)
        if not self.fake.knobs.premium:
            raise _GraphFault(403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                              "Neither tenant is B2C or tenant doesn't have premium license")
        predicates = _parse_sign_in_filter(query.get("$filter", ""))
        with self.fake.lock:
            items = [dict(s) for s in self.fake.data.sign_ins
                     if all(p(s) for p in predicates)]
        items.sort(key=lambda s: s["createdDateTime"], reverse=True)
        return self._page(items, query, "auditLogs/signIns", maximum=_MAX_SIGNIN_TOP)


# ---------------------------------------------------------------------------------------------
# Small parsers for the $filter forms the adapter uses; anything else is refused like Graph
# refuses what it does not support.


def _unsupported(expression: str) -> _GraphFault:
    return _GraphFault(400, "Request_UnsupportedQuery",
                       f"Unsupported or invalid query filter clause specified: '{expression}'.")


def _parse_assignment_filter(expression: str) -> tuple[str | None, set[str]]:
    if not expression:
        return None, set()
    match = re.fullmatch(r"\s*(principalId|roleDefinitionId|directoryScopeId)\s+"
                         r"(eq\s+'([^']*)'|in\s+\(([^)]*)\))\s*", expression)
    if not match:
        raise _unsupported(expression)
    if match[3] is not None:
        return match[1], {match[3]}
    values = re.findall(r"'([^']*)'", match[4])
    if not values or len(values) > _MAX_IN_VALUES:
        raise _GraphFault(400, "Request_UnsupportedQuery",
                          f"Number of included identifiers cannot exceed '{_MAX_IN_VALUES}'.")
    return match[1], set(values)


def _parse_sign_in_filter(expression: str) -> list[Any]:
    predicates: list[Any] = []
    if not expression:
        return predicates
    for clause in re.split(r"\s+and\s+", expression.strip()):
        if m := re.fullmatch(r"createdDateTime\s+(ge|gt)\s+(\S+)", clause):
            since = _parse_iso(m[2])
            if since is None:
                raise _unsupported(clause)
            if m[1] == "ge":
                predicates.append(lambda s, since=since: _parse_iso(s["createdDateTime"]) >= since)
            else:
                predicates.append(lambda s, since=since: _parse_iso(s["createdDateTime"]) > since)
        elif m := re.fullmatch(r"status/errorCode\s+eq\s+(\d+)", clause):
            predicates.append(lambda s, code=int(m[1]): s["status"]["errorCode"] == code)
        elif m := re.fullmatch(r"userId\s+eq\s+'([^']*)'", clause):
            predicates.append(lambda s, uid=m[1]: s["userId"] == uid)
        else:
            raise _unsupported(clause)
    return predicates


def _parse_iso(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _meets_cloud_policy(password: str) -> bool:
    """Entra's cloud rule: 8-256 characters, three of the four character kinds."""
    kinds = [
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
    ]
    return 8 <= len(password) <= 256 and sum(kinds) >= 3


def _redacted(body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("passwordProfile"), dict):
        profile = dict(body["passwordProfile"])
        if "password" in profile:
            profile["password"] = "<redacted>"
        return {**body, "passwordProfile": profile}
    return body

