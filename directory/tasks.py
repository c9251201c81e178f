"""Directory tasks. Each is routed to its connection's queue by the service that sends it."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_shutdown

from directory import services
from directory.models import Connection


@shared_task(ignore_result=True)
def connection_test(connection_id: int) -> None:
    """Test a connection; gone or already-run tests are skipped."""
    if Connection.objects.filter(pk=connection_id).exists():
        services.connection_test(connection_id=connection_id)


@shared_task(ignore_result=True)
def directory_sync(connection_id: int) -> None:
    """Refresh a connection's snapshot; gone or already-run syncs are skipped."""
    if Connection.objects.filter(pk=connection_id).exists():
        services.directory_sync(connection_id=connection_id)


@shared_task(ignore_result=True)
def directory_sync_all() -> None:
    """Beat's periodic refresh: one sync task per connection, on its own queue."""
    queued = Connection.objects.exclude(
        last_sync_status__in=[Connection.Outcome.QUEUED, Connection.Outcome.RUNNING]
    ).filter(client__archived_at__isnull=True)
    for connection in queued:
        Connection.objects.filter(pk=connection.pk).update(
            last_sync_status=Connection.Outcome.QUEUED
        )
        directory_sync.apply_async(args=(connection.pk,), queue=connection.queue)


@worker_process_shutdown.connect
def _directory_connections_close(**_: object) -> None:
    """A stopping worker process unbinds its LDAP connections and closes its Graph sessions
    instead of dropping them."""
    from directory.activedirectory import connections_close_all
    from directory.entra import sign_ins_close_all

    connections_close_all()
    sign_ins_close_all()
