"""Handing queued messages to the SMS provider, with retries for the provider's bad moments."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from sms.services import SMS_QUEUE, message_deliver, retry_countdown

log = logging.getLogger(__name__)

# Five more tries after the first, over about ten minutes (retry_countdown).
MAX_RETRIES = 5


@shared_task(bind=True, ignore_result=True, max_retries=MAX_RETRIES)
def message_send(self: Task, message_id: int) -> None:
    """Hand one queued message to the provider (``sms.services.message_deliver``).

    A temporary failure puts the message back in the queue and schedules this task
    again with backoff; the same sealed text goes out then, so a retry never makes a
    new code or password. Safe to run twice: only a run that claims the row sends.
    """
    retries = int(self.request.retries or 0)
    while True:
        try:
            outcome = message_deliver(message_id=message_id,
                                      final_attempt=retries >= MAX_RETRIES)
        except SoftTimeLimitExceeded:
            # Out of time mid-send; the message is queued again (message_deliver). A code
            # lives ten minutes: try again shortly, not at beat's next look.
            raise self.retry(countdown=retry_countdown(0), queue=SMS_QUEUE) from None
        if outcome != "retry":
            return
        if not self.request.is_eager:
            countdown = retry_countdown(retries)
            log.info("sms %s will be tried again in %.0f s", message_id, countdown)
            raise self.retry(countdown=countdown, queue=SMS_QUEUE)
        # Without a broker (the trial, tests) there is no "later": try again now, in-process,
        # rather than raise Celery's Retry into whoever queued the message.
        retries += 1


@shared_task(ignore_result=True)
def inbound_receive(company_id: int, blink_number: str, provider_id: str, sealed: str) -> None:
    """Record a text the webhook queued and act on it (``sms.inbound.inbound_receive``);
    a provider message id acts once however often it comes."""
    from sms.inbound import inbound_receive as receive

    receive(company_id=company_id, blink_number=blink_number, provider_id=provider_id,
            sealed=sealed)


@shared_task(ignore_result=True)
def inbound_process(message_id: int) -> None:
    """Act on a recorded text left queued (``sms.inbound.inbound_act``); safe to run twice."""
    from sms.inbound import inbound_act

    inbound_act(message_id=message_id)


@shared_task(ignore_result=True)
def inbound_requeue() -> None:
    """Beat's sweep for inbound texts whose task was lost (``sms.inbound.inbound_requeue``)."""
    from sms.inbound import inbound_requeue as requeue

    requeue()


@shared_task(ignore_result=True)
def messages_requeue() -> None:
    """Beat's sweep for outbound messages whose send task was lost
    (``sms.services.messages_requeue``)."""
    from sms.services import messages_requeue as requeue

    requeue()
