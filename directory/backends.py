"""Which adapter serves a connection. Adapters are imported only when first used."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from directory.base import Directory
from directory.models import Connection

_BUILDERS = {
    Connection.Kind.ACTIVE_DIRECTORY: "directory.backends.active_directory_for",
    Connection.Kind.ENTRA: "directory.backends.entra_for",
    Connection.Kind.DEMO: "directory.backends.demo_for",
}


def directory_for(connection: Connection) -> Directory:
    """The adapter for ``connection``, built from its parameters and decrypted secrets."""
    builder = import_string(_BUILDERS[Connection.Kind(connection.kind)])
    directory: Directory = builder(connection)
    return directory


def active_directory_for(connection: Connection) -> Directory:
    from directory.activedirectory import ActiveDirectory, ADSettings

    p: dict[str, Any] = connection.parameters
    return ActiveDirectory(ADSettings(
        url=p["url"],
        bind_user=p["bind_user"],
        bind_password=connection.secrets().get("bind_password", ""),
        base_dn=p["base_dn"],
        scope_dns=tuple(p.get("scope_dns", ())),
        ca_pem=p.get("ca_pem", ""),
        start_tls=bool(p.get("start_tls", False)),
    ))




def entra_for(connection: Connection) -> Directory:
    from directory.entra import EntraDirectory, EntraSettings

    p: dict[str, Any] = connection.parameters
    extra = {key: p[key] for key in ("authority_host", "graph_url", "ca_bundle") if p.get(key)}
    stored = connection.secrets()
    return EntraDirectory(EntraSettings(
        tenant_id=p["tenant_id"],
        client_id=p["client_id"],
        client_secret=stored.get("client_secret", ""),
        certificate_pem=stored.get("certificate_pem", ""),
        proxy=settings.BLINK_HTTPS_PROXY,
        **extra,
    ))


def demo_for(connection: Connection) -> Directory:
    from directory.demo import DemoDirectory

    return DemoDirectory(connection.pk)
