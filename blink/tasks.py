from __future__ import annotations

import socket

from celery import shared_task

from blink.services import worker_heartbeat_record


@shared_task(ignore_result=True)
def worker_heartbeat() -> None:
    """Record that a worker is alive and consuming tasks (beat sends this every 30 s)."""
    worker_heartbeat_record(hostname=socket.gethostname())


@shared_task(ignore_result=True)
def activation_email_send(blink_user_id: int) -> None:
    """Email a Blink user their activation link; already-sent or removed users are skipped."""
    from blink.invitations import activation_email_send as send

    send(blink_user_id=blink_user_id)


@shared_task(ignore_result=True)
def reset_run(request_id: int) -> None:
    """Carry out one reset or unlock request; finished or removed requests are skipped."""
    from blink.resets import reset_run as run

    run(request_id=request_id)  # its claim skips a request that is gone or done


@shared_task(ignore_result=True)
def reset_emails_send(request_id: int) -> None:
    """Email the user (and support, when asked) that a reset or unlock was done."""
    from blink.resets import reset_emails_send as send

    send(request_id=request_id)


@shared_task(ignore_result=True)
def resets_requeue() -> None:
    """Beat's sweep for reset and unlock requests whose task was lost
    (``blink.resets.resets_requeue``)."""
    from blink.resets import resets_requeue as requeue

    requeue()


@shared_task(ignore_result=True)
def lockouts_poll_all() -> None:
    """Beat's lockout check: one ``lockouts_poll`` per monitored connection, on its queue."""
    from blink.lockouts import lockouts_poll_all as poll_all

    poll_all()


@shared_task(ignore_result=True)
def lockouts_poll(connection_id: int) -> None:
    """Ask one directory which Active Blink users are locked; tell the newly locked once."""
    from blink.lockouts import lockouts_poll as poll

    poll(connection_id=connection_id)
