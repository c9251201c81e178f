"""Active Directory over ldap3: Blink's ``Directory`` for on-premises domains.

Always over TLS (LDAPS, or LDAP with StartTLS), the server's certificate checked against
the connection's CA. One bound connection per worker process and settings, opened on
first use, shared by threads (one operation at a time, under a lock) and reopened once when the
server drops it. Every failure becomes a ``DirectoryError`` whose message an admin can
act on; passwords never reach a message or a log line.

User data never reaches a DN here (DNs come from the server, and a ``<GUID=…>`` base is
built from a parsed UUID's hex digits), and the only value built into a filter, the
objectGUID, is escaped byte by byte.

A reset reads the user once (one base search: scope check, tokenGroups, objectSid, resultant
PSO, names) and writes once; the domain's policy and the PSOs, which rarely change, are kept
per connection for ``POLICY_CACHE_SECONDS`` and forgotten when the directory refuses a
password.

Whether an account is privileged is never cached across operations. The one read a reset
makes is done by ``password_policy(object_id)``, which keeps that entry (tokenGroups
included) on the adapter instance; the ``reset_password`` that follows for the same user
on the same instance takes it, once, if it is at most ``ACCOUNT_REUSE_SECONDS`` old, and
reads the account afresh otherwise. Blink builds an adapter per task, so the entry a reset
checks was read for that reset. Nothing else about an account is kept.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ldap3 import BASE, MODIFY_REPLACE, NONE, SUBTREE, SYNC, Connection, Server, Tls
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_bytes

from directory.base import (
    DirectoryError,
    DirectoryUser,
    Group,
    OrgUnit,
    PasswordPolicy,
    Snapshot,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# AD refuses pages larger than MaxPageSize (1000 by default).
PAGE_SIZE = 1000
# Values asked for per range of a large group's member attribute (AD's MaxValRange).
MEMBER_RANGE = 1500
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"

USER_FILTER = "(&(objectCategory=person)(objectClass=user))"
USER_ATTRIBUTES = [
    "objectGUID", "sAMAccountName", "userPrincipalName", "displayName", "givenName", "sn",
    "mail", "mobile", "userAccountControl", "primaryGroupID", "objectSid",
]
UF_ACCOUNTDISABLE = 0x2
# "Password never expires": AD then ignores pwdLastSet=0 (no change required at logon), so
# Blink refuses to give such an account a temporary password.
UF_DONT_EXPIRE_PASSWD = 0x10000
# pwdProperties bit: DOMAIN_PASSWORD_COMPLEX
PASSWORD_COMPLEX = 0x1
# How long the domain's policy and the PSOs read for a reset are reused (they rarely change;
# a refusal by the directory forgets them at once).
POLICY_CACHE_SECONDS = 300
# What a reset or unlock reads of the user, in its one base search. tokenGroups (nested and
# primary groups, for the privileged check) is only returned by base searches; objectSid
# names the built-in accounts, whatever their groups.
ACCOUNT_ATTRIBUTES = [
    "sAMAccountName", "displayName", "userAccountControl", "msDS-ResultantPSO", "tokenGroups",
    "objectSid",
]
# How long the account entry read by ``password_policy`` may serve the ``reset_password``
# that follows it on the same adapter: long enough to make and seal a password, too short
# for a group change to go unseen by more than that one reset.
ACCOUNT_REUSE_SECONDS = 5
# The largest password AD's unicodePwd accepts.
MAX_PASSWORD_LENGTH = 256
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
# 0x8000000000000000 as AD's signed 64-bit integer: "never".
NEVER = -(2**63)

# Privileged groups, by the relative id they have in every domain…
PROTECTED_RIDS = {
    512: "Domain Admins",
    516: "Domain Controllers",
    518: "Schema Admins",
    519: "Enterprise Admins",
    520: "Group Policy Creator Owners",
    521: "Read-only Domain Controllers",
    526: "Key Admins",
    527: "Enterprise Key Admins",
}
# …the built-in ones, by SID…
PROTECTED_BUILTIN_SIDS = {
    "S-1-5-32-544": "Administrators",
    "S-1-5-32-548": "Account Operators",
    "S-1-5-32-549": "Server Operators",
    "S-1-5-32-550": "Print Operators",
    "S-1-5-32-551": "Backup Operators",
    "S-1-5-32-552": "Replicator",
}
# …and the accounts that are privileged by their own relative id, even when taken out of
# every group above.
PROTECTED_ACCOUNT_RIDS = {
    500: "the domain's built-in Administrator account",
    502: "the domain's Kerberos service account (krbtgt)",
}

# ldap3 raises these when the network or the server goes away.
CONNECTION_LOST = (
    ldap_errors.LDAPCommunicationError,
    ldap_errors.LDAPResponseTimeoutError,
    ldap_errors.LDAPMaximumRetriesError,
    OSError,
)
# Result codes worth retrying later: busy, unavailable, time limit, admin limit.
TRANSIENT_RESULTS = {3, 11, 51, 52}


@dataclass(frozen=True)
class ADSettings:
    """How to reach one client's Active Directory (secrets stay out of ``repr``)."""

    url: str
    bind_user: str
    bind_password: str = field(repr=False)
    base_dn: str
    # OUs (DNs) that limit what Blink sees and touches; empty: all of base_dn.
    scope_dns: tuple[str, ...] = ()
    # PEM of the CA that issued the DC's certificate; empty: the system store.
    ca_pem: str = field(default="", repr=False)
    start_tls: bool = False
    timeout: int = 10


@dataclass(frozen=True)
class _Endpoint:
    host: str
    port: int
    use_ssl: bool

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _endpoint(settings: ADSettings) -> _Endpoint:
    """Check the settings without touching the network; raise what is wrong with them."""
    try:
        parts = urlsplit(settings.url.strip())
        port = parts.port
    except ValueError:
        raise DirectoryError(
            f"The directory URL {settings.url!r} is not valid: use ldaps://host:636.",
            permanent=True, code="config",
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in {"ldap", "ldaps"} or not parts.hostname:
        raise DirectoryError(
            f"The directory URL {settings.url!r} is not valid: use ldaps://host:636 "
            "(or ldap://host:389 with StartTLS).",
            permanent=True, code="config",
        )
    if scheme == "ldap" and not settings.start_tls:
        raise DirectoryError(
            "This connection uses plain LDAP without StartTLS. Active Directory will not set "
            "passwords over an unencrypted connection, and Blink never sends credentials "
            "unencrypted: use an ldaps:// URL (port 636) or turn on StartTLS.",
            permanent=True, code="tls_required",
        )
    if not settings.bind_user.strip():
        raise DirectoryError(
            "The service account is missing: enter its user principal name "
            "(e.g. svc-blink@example.com) or DN.",
            permanent=True, code="config",
        )
    if not settings.bind_password.strip():
        # An empty simple-bind password is an anonymous bind that "succeeds".
        raise DirectoryError(
            f"The password of the service account {settings.bind_user} is empty: enter it "
            "in this connection's settings.",
            permanent=True, code="config",
        )
    if not _dn_domain(settings.base_dn):
        raise DirectoryError(
            f"The base DN {settings.base_dn!r} does not name a domain: it should end in "
            "DC= parts, e.g. DC=example,DC=com.",
            permanent=True, code="config",
        )
    if settings.ca_pem.strip():
        try:
            ssl.create_default_context(cadata=settings.ca_pem)
        except (ssl.SSLError, ValueError):
            raise DirectoryError(
                "The CA certificate configured for this connection is not a valid PEM "
                "certificate: upload the CA certificate (-----BEGIN CERTIFICATE-----…).",
                permanent=True, code="config",
            ) from None
    default_port = 636 if scheme == "ldaps" else 389
    return _Endpoint(host=parts.hostname, port=port or default_port, use_ssl=scheme == "ldaps")


# --- values ---------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _first(entry: dict[str, Any], name: str) -> bytes | None:
    values = entry["raw_attributes"].get(name)
    return values[0] if values else None


def _text(entry: dict[str, Any], name: str) -> str:
    value = _first(entry, name)
    return value.decode("utf-8", "replace") if value is not None else ""


def _who(entry: dict[str, Any]) -> str:
    """The account as an admin knows it: display name, else logon name, else DN."""
    return _text(entry, "displayName") or _text(entry, "sAMAccountName") or entry["dn"]


def _integer(entry: dict[str, Any], name: str, default: int = 0) -> int:
    value = _first(entry, name)
    return int(value) if value else default


def _object_id(entry: dict[str, Any]) -> str:
    """objectGUID in Blink's canonical form: the lowercase string AD tools show."""
    raw = _first(entry, "objectGUID")
    if raw is None:
        raise DirectoryError(
            f"The directory returned {entry['dn']} without its objectGUID; the service "
            "account needs read access to it.",
            permanent=True, code="insufficient_rights",
        )
    return str(uuid.UUID(bytes_le=raw))


def _guid(object_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(object_id.strip())
    except (ValueError, AttributeError, TypeError):
        return None


def _sid(raw: bytes) -> str:
    """A binary SID as S-1-5-21-…."""
    count = raw[1]
    authority = int.from_bytes(raw[2:8], "big")
    subs = (int.from_bytes(raw[8 + 4 * i:12 + 4 * i], "little") for i in range(count))
    return f"S-{raw[0]}-{authority}" + "".join(f"-{sub}" for sub in subs)


def _protected_group_name(sid: str) -> str | None:
    """The privileged group a SID names, if it names one."""
    if sid in PROTECTED_BUILTIN_SIDS:
        return PROTECTED_BUILTIN_SIDS[sid]
    parts = sid.split("-")
    # S-1-5-21-a-b-c-RID: a group of some domain (Enterprise/Schema Admins live in the
    # forest root domain, so any domain's well-known RID counts).
    if len(parts) == 8 and parts[2] == "5" and parts[3] == "21":
        return PROTECTED_RIDS.get(int(parts[7]))
    return None


def _rid(sid: str) -> int | None:
    parts = sid.split("-")
    return int(parts[-1]) if len(parts) == 8 and parts[3] == "21" else None


def _protected_account_name(raw_sid: bytes) -> str | None:
    """What built-in privileged account an objectSid belongs to, if any."""
    rid = _rid(_sid(raw_sid))
    return PROTECTED_ACCOUNT_RIDS.get(rid) if rid is not None else None


def _filetime(value: int) -> datetime:
    """AD's 100-ns intervals since 1601 as an aware UTC datetime."""
    return FILETIME_EPOCH + timedelta(microseconds=value // 10)


def _interval(value: int) -> timedelta | None:
    """A lockout duration (negative 100-ns intervals); None: until an admin unlocks it."""
    if value >= 0 or value == NEVER:
        return None
    return timedelta(microseconds=-value // 10)


def _rdn_split(dn: str) -> list[str]:
    """The DN's RDNs, splitting only at unescaped commas."""
    parts, start, escaped = [], 0, False
    for i, char in enumerate(dn):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append(dn[start:i].strip())
            start = i + 1
    parts.append(dn[start:].strip())
    return [part for part in parts if part]


def _parent_dn(dn: str) -> str:
    return ",".join(_rdn_split(dn)[1:])


def _dn_domain(dn: str) -> str:
    """The domain naming context a DN lives in: its trailing DC= parts."""
    rdns = _rdn_split(dn)
    tail: list[str] = []
    for rdn in reversed(rdns):
        if not rdn.lower().startswith("dc="):
            break
        tail.insert(0, rdn)
    return ",".join(tail)


def _dn_key(dn: str) -> tuple[str, ...]:
    """A DN's RDNs in a form to compare (case and spaces around "=" ignored); DNs spelled
    with different escapes compare unequal, which only ever sends a lookup the long way."""
    return tuple(re.sub(r"\s*=\s*", "=", rdn, count=1).lower() for rdn in _rdn_split(dn))


def _complex_enough(password: str, account: str, display_name: str) -> bool:
    """AD's complexity rule: three of five character groups, no account name in it."""
    groups = [
        any(c.isupper() for c in password),
        any(c.islower() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() and c.isascii() for c in password),
        any(c.isalpha() and not c.isupper() and not c.islower() for c in password),
    ]
    if sum(groups) < 3:
        return False
    lowered = password.lower()
    if len(account) >= 3 and account.lower() in lowered:
        return False
    tokens = re.split(r"[,.\-_#\s\t]+", display_name.lower())
    return not any(len(token) >= 3 and token in lowered for token in tokens)


# --- connections ------------------------------------------------------------------------


class _Link:
    """This process's bound connection for one ``ADSettings``, shared by its threads."""

    def __init__(self, settings: ADSettings, endpoint: _Endpoint) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self._lock = threading.Lock()
        # One operation at a time on the shared connection. ldap3's SAFE_SYNC would do the
        # same but deep-copies every response, a second per 10,000-user snapshot.
        self.operation_lock = threading.Lock()
        self._connection: Connection | None = None
        # Password policies read through this connection: "" for the domain's, else the
        # PSO's lowercased DN → (when read, monotonic seconds; the policy).
        self.policy_lock = threading.Lock()
        self.policies: dict[str, tuple[float, PasswordPolicy]] = {}

    def connection(self) -> Connection:
        with self._lock:
            if self._connection is None or self._connection.closed:
                self._connection = self._open()
            return self._connection

    def drop(self, connection: Connection | None = None) -> None:
        """Forget the connection (if it is still ``connection``) and close it."""
        with self._lock:
            if self._connection is None or (
                connection is not None and self._connection is not connection
            ):
                return
            stale, self._connection = self._connection, None
        try:
            stale.unbind()
        except Exception:  # it is already gone; nothing to release
            logger.debug("closing a dropped connection to %s failed", self.endpoint)

    def _open(self) -> Connection:
        settings, endpoint = self.settings, self.endpoint
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_data=settings.ca_pem.strip() or None)
        server = Server(endpoint.host, port=endpoint.port, use_ssl=endpoint.use_ssl, tls=tls,
                        get_info=NONE, connect_timeout=settings.timeout)
        connection = Connection(
            server, user=settings.bind_user, password=settings.bind_password,
            client_strategy=SYNC, raise_exceptions=False, auto_referrals=False,
            auto_range=False, return_empty_attributes=False,
            receive_timeout=settings.timeout,
        )
        try:
            connection.open(read_server_info=False)
            if not endpoint.use_ssl:
                try:
                    started = bool(connection.start_tls(read_server_info=False))
                except ldap_errors.LDAPStartTLSError as error:
                    if isinstance(error, ssl.SSLError | ldap_errors.LDAPCertificateError):
                        raise _tls_error(error, endpoint) from None
                    started = False
                if not started:
                    raise DirectoryError(
                        f"The server at {endpoint} refused StartTLS. Blink needs an encrypted "
                        "connection (AD will not set passwords without one): enable LDAP over "
                        "TLS on the domain controller, or use an ldaps:// URL.",
                        permanent=True, code="tls_required",
                    )
            bound = connection.bind(read_server_info=False)
            result = connection.result
        except DirectoryError:
            _quietly_close(connection)
            raise
        except CONNECTION_LOST as error:
            _quietly_close(connection)
            raise _network_error(error, endpoint) from None
        if not bound:
            _quietly_close(connection)
            raise _bind_error(result, settings)
        logger.info("directory connection opened to %s as %s", endpoint, settings.bind_user)
        return connection


def _quietly_close(connection: Connection) -> None:
    try:
        connection.unbind()
    except Exception:  # closing a half-open socket can fail; it is discarded either way
        logger.debug("closing a failed connection raised", exc_info=True)


_LINKS: dict[tuple[int, ADSettings], _Link] = {}
_LINKS_LOCK = threading.Lock()


def _link_for(settings: ADSettings) -> _Link:
    # The pid keeps a forked worker from sharing its parent's socket.
    key = (os.getpid(), settings)
    with _LINKS_LOCK:
        link = _LINKS.get(key)
    if link is not None:
        return link
    # Checked once per process and settings, not per operation: loading the CA into an SSL
    # context alone takes about half a millisecond.
    endpoint = _endpoint(settings)
    with _LINKS_LOCK:
        return _LINKS.setdefault(key, _Link(settings, endpoint))


def connections_close_all() -> None:
    """Close every directory connection this process holds (e.g. at worker shutdown)."""
    with _LINKS_LOCK:
        links = [link for (pid, _), link in _LINKS.items() if pid == os.getpid()]
        _LINKS.clear()
    for link in links:
        link.drop()


# --- errors -----------------------------------------------------------------------------


def _network_error(error: BaseException, endpoint: _Endpoint) -> DirectoryError:
    """A failure to reach or talk to the server, as a sentence (never ldap3's text, which
    can carry the connection's repr)."""
    if isinstance(error, ssl.SSLError | ldap_errors.LDAPCertificateError):
        return _tls_error(error, endpoint)
    if isinstance(error, ConnectionRefusedError):
        reason = "the connection was refused"
    elif isinstance(error, socket.gaierror):
        reason = "the host name does not resolve"
    elif isinstance(error, TimeoutError | ldap_errors.LDAPResponseTimeoutError) or (
        "timed out" in str(error) or "timeout" in str(error)
    ):
        reason = "it did not answer in time"
    elif isinstance(error, ldap_errors.LDAPSessionTerminatedByServerError):
        reason = "it closed the connection"
    else:
        reason = "the network connection failed"
    return DirectoryError(
        f"Could not reach the domain controller at {endpoint}: {reason}. Check the URL and "
        "port, that the server is up, and that this worker can reach it through any firewall.",
        permanent=False, code="unreachable",
    )


def _tls_error(error: BaseException, endpoint: _Endpoint) -> DirectoryError:
    text = str(error)
    if isinstance(error, ldap_errors.LDAPCertificateError) or "match" in text.lower():
        return DirectoryError(
            f"The domain controller's certificate is not issued for {endpoint.host}: connect "
            "with a host name (or address) the certificate lists.",
            permanent=True, code="certificate",
        )
    if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(error, ssl.SSLCertVerificationError):
        if "expired" in text:
            return DirectoryError(
                f"The certificate of the domain controller at {endpoint} has expired: renew it "
                "on the server.",
                permanent=True, code="certificate",
            )
        return DirectoryError(
            "The CA certificate configured for this connection does not match the server's "
            f"certificate, so Blink did not trust {endpoint}. Upload the CA certificate that "
            "issued the domain controller's certificate (or leave it empty if a public CA in "
            "the system store issued it).",
            permanent=True, code="certificate",
        )
    return DirectoryError(
        f"Could not set up TLS with {endpoint}: check that the port speaks LDAPS (usually 636), "
        "or use ldap:// on 389 with StartTLS.",
        permanent=True, code="tls",
    )


def _ad_data_code(result: dict[str, Any]) -> str:
    """The Windows error AD puts in a bind failure's message ("… data 52e, …")."""
    match = re.search(r"\bdata ([0-9a-f]+)", str(result.get("message") or ""), re.IGNORECASE)
    return match.group(1).lower() if match else ""


def _bind_error(result: dict[str, Any], settings: ADSettings) -> DirectoryError:
    who = f"the service account {settings.bind_user}"
    code = result.get("result")
    if code in {8, 13}:
        return DirectoryError(
            f"The domain controller refused to sign in {who} without a stronger protection: "
            "Blink connects over TLS, so check that the URL is ldaps:// or StartTLS is on.",
            permanent=True, code="tls_required",
        )
    if code in TRANSIENT_RESULTS:
        return DirectoryError(
            f"The domain controller is busy or unavailable and did not sign in {who}; "
            "Blink will try again.",
            permanent=False, code="unavailable",
        )
    data = _ad_data_code(result)
    sentences = {
        "52e": ("bad_credentials", True,
                f"The domain controller rejected the user name or password of {who}. Correct "
                "them in this connection's settings (each failed attempt counts towards the "
                "account's lockout)."),
        "525": ("bad_credentials", True,
                f"The domain controller rejected the user name or password of {who}: no such "
                "account. Check the user principal name or DN."),
        "775": ("locked", False,
                f"{who.capitalize()} is locked out in Active Directory. It unlocks after the "
                "domain's lockout duration, or an AD administrator can unlock it now."),
        "773": ("must_change", True,
                f"{who.capitalize()} must change its password before it can sign in: set a new "
                "password for it in AD (without \"must change at next logon\") and enter it "
                "here."),
        "532": ("password_expired", True,
                f"The password of {who} has expired: set a new one in AD (service accounts "
                "are usually set to never expire) and enter it here."),
        "533": ("disabled", True,
                f"{who.capitalize()} is disabled in Active Directory: enable it, or use "
                "another account."),
        "701": ("account_expired", True,
                f"{who.capitalize()} has expired in Active Directory: extend its expiry date."),
        "530": ("logon_restricted", True,
                f"{who.capitalize()} may not sign in at this time of day (logon hours)."),
        "531": ("logon_restricted", True,
                f"{who.capitalize()} may not sign in from this computer (its "
                "\"log on to\" list)."),
    }
    if data in sentences:
        error_code, permanent, message = sentences[data]
        return DirectoryError(message, permanent=permanent, code=error_code)
    logger.warning("bind as %s refused: %s", settings.bind_user, result.get("description"))
    return DirectoryError(
        f"The domain controller refused to sign in {who} ({result.get('description')}): "
        "check the user name and password in this connection's settings.",
        permanent=True, code="bad_credentials",
    )


def _user_not_found(object_id: object) -> DirectoryError:
    return DirectoryError(
        f"No user with id {str(object_id)[:64]!r} is in this directory's scope (it may have "
        "been deleted or moved out of the configured OUs).",
        permanent=True, code="not_found",
    )


def _result_error(result: dict[str, Any], settings: ADSettings, action: str) -> DirectoryError:
    """An LDAP operation's failure as a sentence; ``action`` says what Blink tried."""
    code = result.get("result")
    description = result.get("description") or code
    logger.warning("directory refused to %s: %s (%s)", action, description,
                   _ad_data_code(result) or "-")
    if code == 50:
        return DirectoryError(
            f"The service account {settings.bind_user} is not allowed to {action}. Delegate "
            "to it, on the users' OUs: Reset password, and read/write lockoutTime and "
            "pwdLastSet.",
            permanent=True, code="insufficient_rights",
        )
    if code in {8, 13}:
        return DirectoryError(
            f"The domain controller refused to {action} without a stronger protection of "
            "the connection; Active Directory only writes passwords over TLS (LDAPS or "
            "StartTLS).",
            permanent=True, code="tls_required",
        )
    if code == 32:
        return DirectoryError(
            f"Could not {action}: the object is not in the directory (it may have been "
            "deleted or moved).",
            permanent=True, code="not_found",
        )
    if code in TRANSIENT_RESULTS:
        return DirectoryError(
            f"The domain controller is busy or unavailable and could not {action}; Blink "
            "will try again.",
            permanent=False, code="unavailable",
        )
    return DirectoryError(
        f"The domain controller refused to {action} ({description}).",
        permanent=True, code="error",
    )


# --- the adapter ------------------------------------------------------------------------


@dataclass(frozen=True)
class _AccountRead:
    """An account entry read by ``password_policy``, kept for the reset that follows."""

    object_id: str  # canonical (lowercase) objectGUID
    read_at: float  # time.monotonic() when read
    entry: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class _GroupRecord:
    object_id: str
    name: str
    dn: str
    description: str
    sid: str
    member_keys: tuple[str, ...]


class ActiveDirectory:
    """One client's Active Directory, reached with ``ADSettings``."""

    lockout_start_exact = True
    unlocks = True

    def __init__(self, settings: ADSettings) -> None:
        # No network here: the connection opens on first use, in the worker that uses it.
        self.settings = settings
        self._account_read: _AccountRead | None = None

    def __repr__(self) -> str:
        return f"ActiveDirectory({self.settings.url!r}, {self.settings.bind_user!r})"

    # -- plumbing

    def _run(self, operation: Callable[[Connection], T]) -> T:
        """Run ``operation`` on this process's connection, reopening it once if it was lost."""
        link = _link_for(self.settings)
        connection = link.connection()
        try:
            with link.operation_lock:
                return operation(connection)
        except CONNECTION_LOST as error:
            logger.info("directory connection to %s lost (%s); reconnecting",
                        link.endpoint, type(error).__name__)
            link.drop(connection)
        connection = link.connection()
        try:
            with link.operation_lock:
                return operation(connection)
        except CONNECTION_LOST as error:
            link.drop(connection)
            raise _network_error(error, link.endpoint) from None

    def _search(self, base: str, search_filter: str, attributes: list[str], *,
                scope: str = SUBTREE, paged: bool = True,
                action: str = "read the directory") -> list[dict[str, Any]]:
        """Every entry the search returns, page by page (referrals are skipped)."""

        def pages(connection: Connection) -> list[dict[str, Any]]:
            entries: list[dict[str, Any]] = []
            cookie: bytes | None = None
            while True:
                options: dict[str, Any] = (
                    {"paged_size": PAGE_SIZE, "paged_cookie": cookie} if paged else {}
                )
                connection.search(base, search_filter, scope, attributes=attributes, **options)
                result, response = connection.result, connection.response
                if result["result"] != 0:
                    raise _result_error(result, self.settings, action)
                entries.extend(e for e in response or () if e["type"] == "searchResEntry")
                control = (result.get("controls") or {}).get(PAGED_RESULTS_OID) or {}
                cookie = (control.get("value") or {}).get("cookie")
                if not paged or not cookie:
                    return entries

        return self._run(pages)

    def _scopes(self) -> tuple[str, ...]:
        return self.settings.scope_dns or (self.settings.base_dn,)

    def _domain_dn(self) -> str:
        return _dn_domain(self.settings.base_dn)

    def _user_entry(self, object_id: str, attributes: Iterable[str] = ()) -> dict[str, Any]:
        """The user with this objectGUID inside the connection's scope, or not_found."""
        guid = _guid(object_id) if isinstance(object_id, str) else None
        if guid is None:
            raise _user_not_found(object_id)
        search_filter = f"(&{USER_FILTER}(objectGUID={escape_bytes(guid.bytes_le)}))"
        for scope_dn in self._scopes():
            try:
                entries = self._search(scope_dn, search_filter, ["objectGUID", *attributes],
                                       paged=False, action=f"look up the user under {scope_dn}")
            except DirectoryError as error:
                if error.code != "not_found":  # a scope OU that is gone holds nobody
                    raise
                entries = []
            if entries:
                return entries[0]
        raise _user_not_found(object_id)

    def _in_scope(self, dn: str) -> bool:
        """Whether ``dn`` is one of the scope DNs or under one."""
        key = _dn_key(dn)
        for scope_dn in self._scopes():
            scope = _dn_key(scope_dn)
            if scope and len(key) >= len(scope) and key[len(key) - len(scope):] == scope:
                return True
        return False

    def _account_entry(self, object_id: str, attributes: Iterable[str]) -> dict[str, Any]:
        """The user with this objectGUID inside the scope, with ``attributes`` (tokenGroups
        too), in one base search on ``<GUID=…>``; not_found otherwise.

        A user the base search finds outside the scope as spelled in the settings is looked
        up by the subtree searches of ``_user_entry``, which have the last word.
        """
        guid = _guid(object_id) if isinstance(object_id, str) else None
        wanted = ["objectGUID", *attributes]
        entries: list[dict[str, Any]] = []
        if guid is not None:
            try:
                # bytes_le.hex() is 32 hex digits: nothing of the caller's reaches the DN.
                entries = self._search(f"<GUID={guid.bytes_le.hex()}>", USER_FILTER, wanted,
                                       scope=BASE, paged=False, action="look up the user")
            except DirectoryError as error:
                # "error": a DC that refuses <GUID=…> bases still answers the long way.
                if error.code not in {"not_found", "error"}:
                    raise
        if guid is not None and entries and _first(entries[0], "objectGUID") == guid.bytes_le \
                and self._in_scope(entries[0]["dn"]):
            return entries[0]
        entry = self._user_entry(object_id)
        found = self._search(entry["dn"], USER_FILTER, wanted, scope=BASE, paged=False,
                             action="read the user")
        if not found:
            raise _user_not_found(object_id)
        return found[0]

    def _privileged(self, dn: str) -> bool:
        """Whether the account is a built-in privileged one or belongs to a privileged
        group, nested and primary included."""
        entries = self._search(dn, "(objectClass=*)", ["objectSid", "tokenGroups"], scope=BASE,
                               paged=False, action="read the user's group memberships")
        entry = entries[0] if entries else {"raw_attributes": {}}
        return bool(self._protected_account(entry) or self._protected_in(entry))

    def _protected_account(self, entry: dict[str, Any]) -> str | None:
        """The built-in privileged account ``entry`` is (by its objectSid), if it is one."""
        raw_sid = _first(entry, "objectSid")
        if raw_sid is None:
            # Every account has a SID: nothing means "may not read", so refuse.
            raise DirectoryError(
                f"The service account {self.settings.bind_user} cannot read this user's "
                "objectSid, so Blink cannot tell whether it is a built-in privileged account: "
                "give it read access to the users.",
                permanent=True, code="insufficient_rights",
            )
        return _protected_account_name(raw_sid)

    def _protected_in(self, entry: dict[str, Any]) -> list[str]:
        """The privileged groups named by the tokenGroups of ``entry`` (read by a base search
        just now)."""
        raw_sids = entry["raw_attributes"].get("tokenGroups", [])
        if not raw_sids:
            # Every account has at least its primary group: nothing means "may not read".
            # Refuse rather than treat a possibly privileged account as ordinary.
            raise DirectoryError(
                f"The service account {self.settings.bind_user} cannot read this user's group "
                "memberships (tokenGroups), so Blink cannot tell whether it is a privileged "
                "account: give it read access to the users.",
                permanent=True, code="insufficient_rights",
            )
        names = {_protected_group_name(_sid(raw)) for raw in raw_sids}
        return sorted(name for name in names if name)

    # -- the protocol

    def test_connection(self) -> str:
        """Bind as the service account and read the root, the base DN and the scope OUs."""
        endpoint = _endpoint(self.settings)
        root = self._search("", "(objectClass=*)", ["dnsHostName", "defaultNamingContext"],
                            scope=BASE, paged=False, action="read the directory's root")
        host = _text(root[0], "dnsHostName") if root else ""
        for dn in (self.settings.base_dn, *self.settings.scope_dns):
            try:
                found = self._search(dn, "(objectClass=*)", ["objectClass"], scope=BASE,
                                     paged=False, action=f"read {dn}")
            except DirectoryError as error:
                if error.code != "not_found":
                    raise
                found = []
            if not found:
                raise DirectoryError(
                    f"Connected, but {dn} was not found: check the base DN and OUs in this "
                    "connection's settings (and that the service account may read them).",
                    permanent=True, code="not_found",
                )
        how = "LDAPS" if endpoint.use_ssl else "LDAP with StartTLS"
        scope = (f" and {len(self.settings.scope_dns)} OU(s) in scope"
                 if self.settings.scope_dns else "")
        return (f"Connected to {host or endpoint.host} over {how} as "
                f"{self.settings.bind_user}, and found {self.settings.base_dn}{scope}.")

    def snapshot(self) -> Snapshot:
        """Every OU, group (members resolved through nesting) and user in scope.

        Groups are read from the whole domain so that nesting through groups outside the
        scope (and the privileged built-in groups) resolves; only groups and users inside
        the scope are returned, and member_ids only name returned users.
        """
        org_units: dict[str, OrgUnit] = {}
        users: dict[str, dict[str, Any]] = {}
        group_ids_in_scope: set[str] = set()
        for scope_dn in self._scopes():
            for entry in self._search(scope_dn, "(objectClass=organizationalUnit)",
                                      ["objectGUID", "name"],
                                      action=f"read the OUs under {scope_dn}"):
                object_id = _object_id(entry)
                org_units[object_id] = OrgUnit(object_id=object_id, name=_text(entry, "name"),
                                               dn=entry["dn"], parent_dn=_parent_dn(entry["dn"]))
            for entry in self._search(scope_dn, USER_FILTER, USER_ATTRIBUTES,
                                      action=f"read the users under {scope_dn}"):
                users[_object_id(entry)] = entry
            for entry in self._search(scope_dn, "(objectClass=group)", ["objectGUID"],
                                      action=f"read the groups under {scope_dn}"):
                group_ids_in_scope.add(_object_id(entry))

        groups = self._groups_read()
        user_ids_by_dn = {entry["dn"].lower(): object_id for object_id, entry in users.items()}
        primary_members: dict[int, set[str]] = {}
        for object_id, entry in users.items():
            primary_members.setdefault(_integer(entry, "primaryGroupID"), set()).add(object_id)

        direct: dict[str, set[str]] = {}
        nested: dict[str, list[str]] = {}
        for key, group in groups.items():
            rid = _rid(group.sid) if group.sid else None
            direct[key] = {user_ids_by_dn[m] for m in group.member_keys if m in user_ids_by_dn}
            direct[key] |= primary_members.get(rid, set()) if rid is not None else set()
            nested[key] = [m for m in group.member_keys if m in groups]

        def members(key: str) -> set[str]:
            found: set[str] = set()
            seen, todo = {key}, [key]
            while todo:
                current = todo.pop()
                found |= direct[current]
                for child in nested[current]:
                    if child not in seen:
                        seen.add(child)
                        todo.append(child)
            return found

        resolved = {key: members(key) for key in groups}
        protected: set[str] = set()
        for key, group in groups.items():
            if group.sid and _protected_group_name(group.sid):
                protected |= resolved[key]
        for object_id, entry in users.items():
            raw_sid = _first(entry, "objectSid")
            if raw_sid is not None and _protected_account_name(raw_sid):
                protected.add(object_id)

        return Snapshot(
            org_units=sorted(org_units.values(), key=lambda ou: ou.dn.lower()),
            groups=sorted(
                (
                    Group(object_id=group.object_id, name=group.name, dn=group.dn,
                          parent_dn=_parent_dn(group.dn), description=group.description,
                          member_ids=frozenset(resolved[key]))
                    for key, group in groups.items() if group.object_id in group_ids_in_scope
                ),
                key=lambda group: group.name.lower(),
            ),
            users=sorted(
                (self._user(object_id, entry, protected=object_id in protected)
                 for object_id, entry in users.items()),
                key=lambda user: user.username.lower(),
            ),
        )

    def _groups_read(self) -> dict[str, _GroupRecord]:
        """Every group in the domain, keyed by lowercased DN, with all its member DNs."""
        first_range = f"member;range=0-{MEMBER_RANGE - 1}"
        records: dict[str, _GroupRecord] = {}
        for entry in self._search(self._domain_dn(), "(objectClass=group)",
                                  ["objectGUID", "name", "description", "objectSid",
                                   first_range], action="read the groups"):
            sid_raw = _first(entry, "objectSid")
            records[entry["dn"].lower()] = _GroupRecord(
                object_id=_object_id(entry), name=_text(entry, "name"), dn=entry["dn"],
                description=_text(entry, "description"),
                sid=_sid(sid_raw) if sid_raw else "",
                member_keys=tuple(m.lower() for m in self._members_read(entry)),
            )
        return records

    def _members_read(self, entry: dict[str, Any]) -> list[str]:
        """A group's member DNs, following ranged retrieval (``member;range=lo-hi``)."""
        members: list[str] = []
        while True:
            next_start = None
            for name, values in entry["raw_attributes"].items():
                lowered = name.lower()
                if lowered == "member":
                    members.extend(v.decode("utf-8", "replace") for v in values)
                elif lowered.startswith("member;range="):
                    members.extend(v.decode("utf-8", "replace") for v in values)
                    high = lowered.rsplit("-", 1)[1]
                    if high != "*":
                        next_start = int(high) + 1
            if next_start is None:
                return members
            window = f"member;range={next_start}-{next_start + MEMBER_RANGE - 1}"
            found = self._search(entry["dn"], "(objectClass=*)", [window], scope=BASE,
                                 paged=False, action="read a large group's members")
            if not found:
                return members
            entry = found[0]

    def _user(self, object_id: str, entry: dict[str, Any], *, protected: bool) -> DirectoryUser:
        flags = _integer(entry, "userAccountControl")
        return DirectoryUser(
            object_id=object_id,
            username=_text(entry, "sAMAccountName"),
            upn=_text(entry, "userPrincipalName"),
            display_name=_text(entry, "displayName"),
            given_name=_text(entry, "givenName"),
            surname=_text(entry, "sn"),
            email=_text(entry, "mail"),
            mobile=_text(entry, "mobile"),
            enabled=not flags & UF_ACCOUNTDISABLE,
            protected=protected,
            password_never_expires=bool(flags & UF_DONT_EXPIRE_PASSWD),
            dn=entry["dn"],
            parent_dn=_parent_dn(entry["dn"]),
        )

    def get_user(self, object_id: str) -> DirectoryUser:
        """One user by objectGUID; ``DirectoryError(code="not_found")`` outside the scope."""
        entry = self._user_entry(object_id, USER_ATTRIBUTES)
        return self._user(_object_id(entry), entry, protected=self._privileged(entry["dn"]))

    def password_policy(self, object_id: str | None = None) -> PasswordPolicy:
        """The domain's policy, or the user's resultant fine-grained policy where one applies.

        For a user, the account is read with everything a reset needs and kept for the
        ``reset_password`` that follows on this adapter (see ``_account_for_reset``).
        """
        if object_id is None:
            return self._domain_policy()
        entry = self._account_entry(object_id, ACCOUNT_ATTRIBUTES)
        self._account_read = _AccountRead(object_id=_object_id(entry),
                                          read_at=time.monotonic(), entry=entry)
        return self._policy_for(_text(entry, "msDS-ResultantPSO"), cached=True)

    def _account_for_reset(self, object_id: str) -> dict[str, Any]:
        """The user's entry for a reset: the one ``password_policy`` read for this user on
        this adapter if it is at most ACCOUNT_REUSE_SECONDS old, else a new read. A kept
        entry serves one reset and is then dropped."""
        kept, self._account_read = self._account_read, None
        guid = _guid(object_id) if isinstance(object_id, str) else None
        if (kept is not None and guid is not None and kept.object_id == str(guid)
                and time.monotonic() - kept.read_at <= ACCOUNT_REUSE_SECONDS):
            return kept.entry
        return self._account_entry(object_id, ACCOUNT_ATTRIBUTES)

    def _policy_cached(self, key: str, read: Callable[[], PasswordPolicy]) -> PasswordPolicy:
        """``read()``'s policy, reused from this connection for POLICY_CACHE_SECONDS."""
        link = _link_for(self.settings)
        now = time.monotonic()
        with link.policy_lock:
            hit = link.policies.get(key)
        if hit is not None and now - hit[0] < POLICY_CACHE_SECONDS:
            return hit[1]
        policy = read()
        with link.policy_lock:
            link.policies[key] = (now, policy)
        return policy

    def _policies_forget(self) -> None:
        link = _link_for(self.settings)
        with link.policy_lock:
            link.policies.clear()

    def _domain_policy(self, *, cached: bool = False) -> PasswordPolicy:
        if cached:
            return self._policy_cached("", self._domain_policy)
        entries = self._search(
            self._domain_dn(), "(objectClass=*)",
            ["minPwdLength", "pwdProperties", "pwdHistoryLength", "lockoutThreshold",
             "lockoutDuration"],
            scope=BASE, paged=False, action="read the domain's password policy",
        )
        if not entries:
            raise DirectoryError(
                f"Could not read the password policy of {self._domain_dn()}: the service "
                "account needs read access to the domain object.",
                permanent=True, code="insufficient_rights",
            )
        entry = entries[0]
        return PasswordPolicy(
            min_length=_integer(entry, "minPwdLength"),
            complexity=bool(_integer(entry, "pwdProperties") & PASSWORD_COMPLEX),
            history_length=_integer(entry, "pwdHistoryLength"),
            max_length=MAX_PASSWORD_LENGTH,
            lockout_threshold=_integer(entry, "lockoutThreshold"),
            lockout_duration=_interval(_integer(entry, "lockoutDuration", NEVER)),
        )

    def _policy_for(self, pso_dn: str, *, cached: bool = False) -> PasswordPolicy:
        """The policy for a user whose msDS-ResultantPSO is ``pso_dn``: that PSO's, else
        (empty) the domain's."""
        if not pso_dn:
            return self._domain_policy(cached=cached)
        if cached:
            return self._policy_cached(pso_dn.lower(), lambda: self._policy_for(pso_dn))
        cannot_read = DirectoryError(
            f"A fine-grained password policy ({pso_dn}) applies to this user, but the service "
            f"account {self.settings.bind_user} cannot read it: give it read access to the "
            "Password Settings Container.",
            permanent=True, code="insufficient_rights",
        )
        try:
            found = self._search(
                pso_dn, "(objectClass=msDS-PasswordSettings)",
                ["msDS-MinimumPasswordLength", "msDS-PasswordComplexityEnabled",
                 "msDS-PasswordHistoryLength", "msDS-LockoutThreshold", "msDS-LockoutDuration"],
                scope=BASE, paged=False, action="read the fine-grained password policy",
            )
        except DirectoryError as error:
            if error.code in {"not_found", "insufficient_rights"}:
                raise cannot_read from None
            raise
        if not found or _first(found[0], "msDS-MinimumPasswordLength") is None:
            raise cannot_read
        pso = found[0]
        return PasswordPolicy(
            min_length=_integer(pso, "msDS-MinimumPasswordLength"),
            complexity=_text(pso, "msDS-PasswordComplexityEnabled").upper() == "TRUE",
            history_length=_integer(pso, "msDS-PasswordHistoryLength"),
            max_length=MAX_PASSWORD_LENGTH,
            lockout_threshold=_integer(pso, "msDS-LockoutThreshold"),
            lockout_duration=_interval(_integer(pso, "msDS-LockoutDuration", NEVER)),
        )

    def reset_password(
        self, object_id: str, new_password: str, *, must_change: bool = True, unlock: bool = False
    ) -> None:
        """Set a new password in one modify: unicodePwd, with pwdLastSet=0 when the user must
        change it at next logon, and lockoutTime=0 when ``unlock``. Privileged accounts are
        refused (``code="protected"``), and so, when the user must change the password, are
        accounts whose password never expires (``code="never_expires"``: AD would not ask
        for the change) or whose userAccountControl the service account cannot read
        (``code="insufficient_rights"``); a password the policy rejects raises
        ``code="policy"`` naming the rule. The account is read once per reset: here, or
        just before by ``password_policy`` for the same user on this adapter."""
        if not isinstance(new_password, str) or not new_password.strip():
            raise DirectoryError("The new password is empty; nothing was changed.",
                                 permanent=True, code="policy")
        if "\x00" in new_password or len(new_password) > MAX_PASSWORD_LENGTH:
            raise DirectoryError(
                f"The new password must be at most {MAX_PASSWORD_LENGTH} characters and "
                "contain no NUL character; nothing was changed.",
                permanent=True, code="policy",
            )
        entry = self._account_for_reset(object_id)
        self._refuse_protected(entry, "reset the password of")
        if must_change and _first(entry, "userAccountControl") is None:
            # Unreadable is not "0": the account may be set to never expire, and then the
            # temporary password would stay. Refuse, as for unreadable tokenGroups.
            logger.warning("refused to reset %s: userAccountControl not readable",
                           _object_id(entry))
            raise DirectoryError(
                f"Blink did not reset {_who(entry)}'s password: the service account "
                f"{self.settings.bind_user} cannot read the account's userAccountControl, so "
                "Blink cannot tell whether its password is set to never expire (Windows would "
                "then never ask for the temporary password to be replaced). Give the service "
                "account read access to userAccountControl on the users, then reset again.",
                permanent=True, code="insufficient_rights",
            )
        if must_change and _integer(entry, "userAccountControl") & UF_DONT_EXPIRE_PASSWD:
            # AD would take pwdLastSet=0 and ignore it: the temporary password, which went
            # by SMS, would stay the account's password for good.
            who = _who(entry)
            logger.warning("refused to reset %s: its password never expires",
                           _object_id(entry))
            raise DirectoryError(
                f"Blink did not reset {who}'s password: the account is set to \"Password "
                "never expires\", so Windows would never ask them to replace the temporary "
                "password. Clear that option on the account in Active Directory, then reset "
                "again.",
                permanent=True, code="never_expires",
            )
        changes: dict[str, Any] = {
            "unicodePwd": [(MODIFY_REPLACE, [f'"{new_password}"'.encode("utf-16-le")])],
        }
        if must_change:
            changes["pwdLastSet"] = [(MODIFY_REPLACE, ["0"])]
        if unlock:
            changes["lockoutTime"] = [(MODIFY_REPLACE, ["0"])]
        result = self._modify(entry["dn"], changes)
        if result["result"] == 19:
            raise self._policy_violation(entry, new_password, result)
        if result["result"] == 53:
            raise DirectoryError(
                "The domain controller was unwilling to set the password. Active Directory "
                "only sets passwords over an encrypted connection (LDAPS or StartTLS) and for "
                "accounts it may change: check the connection's TLS settings and the account.",
                permanent=True, code="tls_required",
            )
        if result["result"] != 0:
            raise _result_error(result, self.settings, "reset this user's password")
        logger.info("password reset for %s (must_change=%s, unlock=%s)",
                    _object_id(entry), must_change, unlock)

    def _modify(self, dn: str, changes: dict[str, Any]) -> dict[str, Any]:
        def modify(connection: Connection) -> dict[str, Any]:
            connection.modify(dn, changes)
            result: dict[str, Any] = connection.result
            return result

        return self._run(modify)

    def _refuse_protected(self, entry: dict[str, Any], action: str) -> None:
        """Refuse a privileged account; ``entry`` was read for this very operation (by
        ``_account_entry``, or by this reset's ``password_policy`` at most
        ACCOUNT_REUSE_SECONDS before), so its tokenGroups are current."""
        account = self._protected_account(entry)
        if account:
            who = _who(entry)
            logger.warning("refused to %s protected account %s (%s)", action,
                           _object_id(entry), account)
            raise DirectoryError(
                f"Blink does not {action} privileged accounts: {who} is {account}, which "
                "stays privileged whatever its groups. Do it in Active Directory itself.",
                permanent=True, code="protected",
            )
        groups = self._protected_in(entry)
        if groups:
            who = _who(entry)
            logger.warning("refused to %s protected account %s (%s)", action,
                           _object_id(entry), ", ".join(groups))
            raise DirectoryError(
                f"Blink does not {action} privileged accounts: {who} is a member of "
                f"{' and '.join(groups)} (directly or through nested groups). Do it in Active "
                "Directory itself.",
                permanent=True, code="protected",
            )

    def _policy_violation(self, entry: dict[str, Any], password: str,
                          result: dict[str, Any]) -> DirectoryError:
        """Which rule the refused password broke, in words (AD's own answer only says
        0000052D; Samba's names the rule)."""
        server = str(result.get("message") or "").lower()
        # The policy may have changed since it was cached: read it afresh, now and next time.
        self._policies_forget()
        try:
            policy: PasswordPolicy | None = self._policy_for(_text(entry, "msDS-ResultantPSO"))
        except DirectoryError:
            policy = None
        account = _text(entry, "sAMAccountName")
        display_name = _text(entry, "displayName")
        suffix = " The password was not changed."
        if "too short" in server or (policy and len(password) < policy.min_length):
            minimum = policy.min_length if policy else None
            if minimum is None:
                match = re.search(r"(\d+) characters", server)
                minimum = int(match.group(1)) if match else None
            need = f"at least {minimum} characters" if minimum else "a longer password"
            message = f"The new password is too short: this user's password policy requires {need}."
        elif "complexity" in server or (
            policy and policy.complexity and not _complex_enough(password, account, display_name)
        ):
            message = ("The new password does not meet the complexity rule: it needs characters "
                       "from three of uppercase letters, lowercase letters, digits and symbols, "
                       "and must not contain the account name or parts of the user's name.")
        elif "history" in server or (policy and policy.history_length):
            count = policy.history_length if policy else 0
            message = ("The new password was refused, most likely because it matches one of "
                       f"this user's last {count or 'few'} passwords (password history).")
        else:
            message = "The new password does not meet this user's password policy."
        logger.info("password for %s refused by the directory's policy", _object_id(entry))
        return DirectoryError(message + suffix, permanent=True, code="policy")

    def unlock(self, object_id: str) -> None:
        """Clear the account's lockout (lockoutTime=0) without touching its password.

        Privileged accounts are refused, as for resets.
        """
        entry = self._account_entry(object_id, ACCOUNT_ATTRIBUTES)
        self._refuse_protected(entry, "unlock")
        result = self._modify(entry["dn"], {"lockoutTime": [(MODIFY_REPLACE, ["0"])]})
        if result["result"] != 0:
            raise _result_error(result, self.settings, "unlock this user")
        logger.info("account unlocked: %s", _object_id(entry))

    def locked_out(self, object_ids: Iterable[str]) -> dict[str, datetime]:
        """Which of these users are locked now, with when the lockout began (UTC).

        One paged search over the domain: users with lockoutTime >= 1, plus the domain
        object and the fine-grained policies (for their lockout durations). A lockout older
        than the user's lockout duration (the PSO's when the service account can read it,
        else the domain's) has expired and is left out.
        """
        # canonical id → the caller's spelling of it
        wanted: dict[str, str] = {}
        for object_id in object_ids:
            guid = _guid(object_id) if isinstance(object_id, str) else None
            if guid is not None:
                wanted[str(guid)] = object_id
        if not wanted:
            return {}
        domain_dn = self._domain_dn()
        entries = self._search(
            domain_dn,
            f"(|(&{USER_FILTER}(lockoutTime>=1))(objectClass=domainDNS)"
            "(objectClass=msDS-PasswordSettings))",
            ["objectGUID", "lockoutTime", "msDS-ResultantPSO", "lockoutDuration",
             "msDS-LockoutDuration"],
            action="read which users are locked out",
        )
        domain_duration: timedelta | None = None
        domain_seen = False
        pso_durations: dict[str, timedelta | None] = {}
        locked: list[tuple[str, datetime, str]] = []
        for entry in entries:
            if _first(entry, "lockoutTime") is not None:
                object_id = _object_id(entry)
                if object_id in wanted and _integer(entry, "lockoutTime") > 0:
                    locked.append((object_id, _filetime(_integer(entry, "lockoutTime")),
                                   _text(entry, "msDS-ResultantPSO").lower()))
            elif _first(entry, "msDS-LockoutDuration") is not None:
                pso_durations[entry["dn"].lower()] = _interval(
                    _integer(entry, "msDS-LockoutDuration"))
            elif entry["dn"].lower() == domain_dn.lower():
                domain_seen = True
                domain_duration = _interval(_integer(entry, "lockoutDuration", NEVER))
        if locked and not domain_seen:
            domain_duration = self._domain_policy().lockout_duration
        now = _utcnow()
        found: dict[str, datetime] = {}
        for object_id, since, pso in locked:
            duration = pso_durations.get(pso, domain_duration) if pso else domain_duration
            if duration is None or since + duration > now:
                found[wanted[object_id]] = since
        return found

    def is_protected(self, object_id: str) -> bool:
        """Whether the account is privileged: the built-in Administrator or krbtgt (by the
        RID of its objectSid), or a member, through any nesting or its primary group, of a
        protected group (by SID, from the user's tokenGroups)."""
        entry = self._user_entry(object_id)
        return self._privileged(entry["dn"])

    def close(self) -> None:
        """Close this process's connection for these settings (the next call reopens one)."""
        key = (os.getpid(), self.settings)
        with _LINKS_LOCK:
            link = _LINKS.pop(key, None)
        if link is not None:
            link.drop()
