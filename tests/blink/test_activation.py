"""Activation, end to end at the HTTP level, with the SECURITY.md cases that touch it."""

from __future__ import annotations

import logging
import re
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.db import connection as db_connection
from django.test import Client as Browser
from django.utils import timezone

from blink.audit import SYSTEM
from blink.invitations import blink_user_reinvite
from blink.models import AuditEvent, BlinkUser
from clients.models import Client
from sms.codes import verification_code_check
from sms.models import Message, VerificationCode
from tests.blink.conftest import invite

PHONE = "+14155550123"
OTHER_PHONE = "+14155550199"




def link_in(email) -> str:
    match = re.search(r"https?://\S+/activate/[\w-]+/", email.body)
    assert match, email.body
    return match.group(0)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def latest_code(outbox, phone=PHONE) -> str:
    texts = [m["body"] for m in outbox if m["to"] == phone]
    assert texts, outbox
    code = re.search(r"\b(\d{6})\b", texts[-1])
    assert code is not None, texts[-1]
    return code.group(1)


def start(browser: Browser, blink_user) -> None:
    email = next(m for m in mail.outbox if blink_user.email in m.to)
    response = browser.get(path_of(link_in(email)))
    assert response.status_code == 302
    assert response["Location"] == "/activate/phone/"


def submit_phone(browser, captured, phone=PHONE):
    with captured(execute=True):
        return browser.post("/activate/phone/", {"phone": phone})


def test_the_link_of_an_archived_clients_user_leads_nowhere(invited, acme_client):
    email = mail.outbox[-1]
    Client.objects.filter(pk=acme_client.pk).update(archived_at=timezone.now())
    assert Browser().get(path_of(link_in(email))).status_code == 404
    # Restored, the same link works again (it has not expired).
    Client.objects.filter(pk=acme_client.pk).update(archived_at=None)
    assert Browser().get(path_of(link_in(email))).status_code == 302


def test_the_email_says_how_long_the_link_lasts(settings, acme_client, directory,
                                               django_capture_on_commit_callbacks):
    settings.BLINK_ACTIVATION_HOURS = 24
    invite(acme_client, directory, django_capture_on_commit_callbacks)
    [email] = mail.outbox
    assert isinstance(email, EmailMultiAlternatives)
    assert "expires in 24 hours" in email.body
    assert "expires in 24 hours" in str(email.alternatives[0][0])


def test_the_whole_activation(invited, company, sms_outbox, django_capture_on_commit_callbacks):
    browser = Browser()
    email = mail.outbox[-1]
    assert email.subject == "Activate Blink for your Acme IT account"
    assert link_in(email).startswith("https://blink.acme-it.example/activate/")
    start(browser, invited)
    page = browser.get("/activate/phone/").content.decode()
    assert "Enter your mobile number" in page and "Acme IT" in page

    response = submit_phone(browser, django_capture_on_commit_callbacks)
    assert response["Location"] == "/activate/code/"
    assert "•••• 0123" in browser.get("/activate/code/").content.decode()
    code = latest_code(sms_outbox)
    assert "Acme IT Blink code" in sms_outbox[-1]["body"]

    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post("/activate/code/", {"code": code})
    assert response["Location"] == "/activate/done/"
    done = browser.get("/activate/done/").content.decode()
    assert "You're set." in done and "Text <strong>RESET</strong>" in done
    assert f"/brand/{company.pk}/blink.vcf" in done

    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.ACTIVE
    assert str(invited.phone) == PHONE
    assert invited.activation_token_hash is None
    assert "You're set up with Blink" in sms_outbox[-1]["body"]
    assert AuditEvent.objects.filter(action="blink_user.activate",
                                     target_label=invited.username).count() == 1
    # The link worked once.
    assert Browser().get(path_of(link_in(email))).status_code == 404


def test_contact_card(company, settings):
    response = Browser().get(f"/brand/{company.pk}/blink.vcf")
    card = response.content.decode()
    assert response["Content-Type"].startswith("text/vcard")
    assert "BEGIN:VCARD" in card and f"TEL;TYPE=CELL:{settings.BLINK_SMS_NUMBER}" in card


def test_a_company_name_cannot_add_lines_to_the_contact_card(company):
    company.name = "Acme; IT, Inc\r\nTEL;TYPE=CELL:+19005550100"
    company.save()

    card = Browser().get(f"/brand/{company.pk}/blink.vcf").content.decode()

    lines = card.split("\r\n")
    [tel] = [line for line in lines if line.startswith("TEL")]
    assert "9005550100" not in tel
    assert "ORG:Acme\\; IT\\, Inc TEL\\;TYPE=CELL:+19005550100" in lines


def test_unknown_tampered_expired_and_used_links_look_the_same(invited):
    email_link = path_of(link_in(mail.outbox[-1]))
    tampered = email_link[:-3] + ("A" if email_link[-3] != "A" else "B") + email_link[-2:]
    answers = [Browser().get(path) for path in
               ["/activate/not-a-token/", tampered, "/activate/" + "x" * 300 + "/"]]
    BlinkUser.objects.filter(pk=invited.pk).update(
        activation_expires_at=timezone.now() - timedelta(seconds=1))
    answers.append(Browser().get(email_link))
    bodies = {(r.status_code, r.content) for r in answers}
    assert len(bodies) == 1
    status, body = bodies.pop()
    assert status == 404 and b"doesn't work any more" in body


def test_a_phone_bound_to_another_user_gets_a_generic_refusal(
    acme_client, directory, invited, django_capture_on_commit_callbacks, sms_outbox
):
    other = invite(acme_client, directory, django_capture_on_commit_callbacks, index=1)
    BlinkUser.objects.filter(pk=other.pk).update(phone=PHONE, status="active")
    browser = Browser()
    start(browser, invited)
    response = submit_phone(browser, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert "This number can&#x27;t be used for Blink" in response.content.decode()
    invited.refresh_from_db()
    assert invited.pending_phone is None and invited.status == "invited"
    assert sms_outbox == []
    refusal = AuditEvent.objects.get(action="activation.phone")
    assert (refusal.result, refusal.detail["reason"]) == ("refused", "in use")


def test_wrong_codes_count_and_five_kill_the_code(invited, sms_outbox,
                                                  django_capture_on_commit_callbacks):
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    code = latest_code(sms_outbox)
    wrong = "000000" if code != "000000" else "111111"
    response = browser.post("/activate/code/", {"code": wrong})
    assert response.status_code == 400
    assert "That code is wrong or has expired" in response.content.decode()
    for _ in range(4):
        browser.post("/activate/code/", {"code": wrong})
    browser.post("/activate/code/", {"code": code})
    invited.refresh_from_db()
    assert invited.status == "verifying_phone"


def test_a_resend_kills_the_old_code(invited, sms_outbox, django_capture_on_commit_callbacks):
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    first = latest_code(sms_outbox)
    with django_capture_on_commit_callbacks(execute=True):
        page = browser.post("/activate/code/", {"resend": "1"}).content.decode()
    assert "The previous code no longer works" in page
    second = latest_code(sms_outbox)
    if first != second:
        assert browser.post("/activate/code/", {"code": first}).status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        assert browser.post("/activate/code/", {"code": second}).status_code == 302


def test_an_expired_code_is_refused(invited, sms_outbox, django_capture_on_commit_callbacks):
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    VerificationCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert browser.post("/activate/code/",
                        {"code": latest_code(sms_outbox)}).status_code == 400


def test_ten_wrong_codes_a_day_pause_self_service(invited, sms_outbox,
                                                  django_capture_on_commit_callbacks):
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    for _ in range(2):
        code = latest_code(sms_outbox)
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(5):
            response = browser.post("/activate/code/", {"code": wrong})
        if response.status_code != 429:
            with django_capture_on_commit_callbacks(execute=True):
                browser.post("/activate/code/", {"resend": "1"})
    assert response.status_code == 429
    assert "paused activation for 24 hours" in response.content.decode()
    invited.refresh_from_db()
    assert invited.paused_until > timezone.now() + timedelta(hours=23)
    assert invited.status != "active"


def test_a_paused_user_is_texted_no_code(invited, sms_outbox,
                                        django_capture_on_commit_callbacks):
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    BlinkUser.objects.filter(pk=invited.pk).update(
        paused_until=timezone.now() + timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        resent = browser.post("/activate/code/", {"resend": "1"})
    again = Browser()
    start(again, invited)
    with django_capture_on_commit_callbacks(execute=True):
        typed = again.post("/activate/phone/", {"phone": OTHER_PHONE})

    for answer in (resent, typed):
        assert answer.status_code == 429
        assert "paused activation for 24 hours" in answer.content.decode()
    assert len(sms_outbox) == 1
    invited.refresh_from_db()
    assert str(invited.pending_phone) == PHONE
    assert invited.status == BlinkUser.Status.VERIFYING_PHONE
    assert AuditEvent.objects.filter(action="activation.paused", result="refused").count() == 2


def test_codes_are_capped_before_the_provider_is_called(invited, sms_outbox,
                                                        django_capture_on_commit_callbacks):
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    for _ in range(4):
        with django_capture_on_commit_callbacks(execute=True):
            browser.post("/activate/code/", {"resend": "1"})
    sent = len(sms_outbox)
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post("/activate/code/", {"resend": "1"})
    assert response.status_code == 429
    assert "Please wait a little" in response.content.decode()
    assert len(sms_outbox) == sent == 5


def test_steps_cannot_be_skipped(invited):
    fresh = Browser()
    assert fresh.post("/activate/code/", {"code": "123456"}).status_code == 404
    assert fresh.post("/activate/phone/", {"phone": PHONE}).status_code == 404
    assert fresh.get("/activate/done/").status_code == 404
    browser = Browser()
    start(browser, invited)
    assert browser.get("/activate/code/")["Location"] == "/activate/phone/"
    assert browser.get("/activate/done/").status_code == 404
    invited.refresh_from_db()
    assert invited.status == "invited"


def test_ids_posted_by_the_browser_are_ignored(acme_client, directory, invited, sms_outbox,
                                               django_capture_on_commit_callbacks):
    other = invite(acme_client, directory, django_capture_on_commit_callbacks, index=1)
    browser = Browser()
    start(browser, invited)
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/activate/phone/", {"phone": PHONE, "user": other.pk,
                                          "blink_user": other.pk, "object_id": other.object_id})
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/activate/code/", {"code": latest_code(sms_outbox), "user": other.pk,
                                         "phone": OTHER_PHONE})
    invited.refresh_from_db()
    other.refresh_from_db()
    assert invited.status == "active" and str(invited.phone) == PHONE
    assert other.status == "invited" and other.phone is None


@pytest.mark.parametrize("phone", [
    "+١٤١٥٥٥٥٠١٢٣",             # Arabic-Indic digits
    "+1415555012345678",         # 16 digits
    "12",                        # too short
    "call me",                   # not a number
    "+1415555\x000123",          # NUL
    "+1" + "5" * 10_000,         # 10 kB
    "+18005550199",              # toll-free: cannot receive SMS
])
def test_malformed_phones_are_refused_clearly(invited, phone, sms_outbox):
    browser = Browser()
    start(browser, invited)
    response = browser.post("/activate/phone/", {"phone": phone})
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    invited.refresh_from_db()
    assert invited.pending_phone is None
    assert not Message.objects.exists() and sms_outbox == []


def test_an_array_where_a_phone_was_expected_is_refused(invited):
    browser = Browser()
    start(browser, invited)
    response = browser.post("/activate/phone/", {"phone": [PHONE, OTHER_PHONE]})
    assert response.status_code == 400
    invited.refresh_from_db()
    assert invited.pending_phone is None


@pytest.mark.parametrize(
    "code", ["123", "١٢٣٤٥٦", "１２３４５６", "12345678", "abcdef", "12\x003456"]
)
def test_malformed_codes_are_refused_without_counting(invited, code, sms_outbox,
                                                      django_capture_on_commit_callbacks):
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    response = browser.post("/activate/code/", {"code": code})
    assert response.status_code == 400
    assert "Enter the 6 digits" in response.content.decode() or "Null" in response.content.decode()
    assert VerificationCode.objects.get().attempts == 0


def test_reset_user_kills_the_old_link(invited, django_capture_on_commit_callbacks):
    old_link = path_of(link_in(mail.outbox[-1]))
    with django_capture_on_commit_callbacks(execute=True):
        blink_user_reinvite(blink_user=invited, actor=SYSTEM)
    new_link = path_of(link_in(mail.outbox[-1]))
    assert old_link != new_link
    assert Browser().get(old_link).status_code == 404
    assert Browser().get(new_link).status_code == 302


def test_no_code_or_token_reaches_logs_or_stored_messages(
    invited, sms_outbox, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    token = link_in(mail.outbox[-1]).rstrip("/").rsplit("/", 1)[1]
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    code = latest_code(sms_outbox)
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/activate/code/", {"code": code})
    stored = " ".join(Message.objects.values_list("body", flat=True))
    stored += " ".join(Message.objects.values_list("sealed_body", flat=True))
    stored += " ".join(str(e.detail) for e in AuditEvent.objects.all())
    for secret in (code, token):
        assert secret not in caplog.text
        assert secret not in stored
    assert PHONE not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_submits_of_one_code_succeed_once(
    company, acme_client, directory, sms_outbox
):
    blink_user = BlinkUser.objects.create(client=acme_client, connection=directory,
                                          object_id="race", username="race", email="r@x.example")
    from sms.codes import verification_code_issue

    verification_code_issue(blink_user=blink_user, phone=PHONE, ip=None)
    code = latest_code(sms_outbox)
    results: list[object] = []
    barrier = threading.Barrier(2)

    def submit() -> None:
        barrier.wait()
        try:
            results.append(verification_code_check(blink_user=blink_user, code=code))
        finally:
            db_connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result is not None for result in results) == 1


def test_every_activation_step_leaves_one_audit_event(
    invited, sms_outbox, django_capture_on_commit_callbacks
):
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    code = latest_code(sms_outbox)
    browser.post("/activate/code/", {"code": "000000" if code != "000000" else "111111"})
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/activate/code/", {"resend": "1"})
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/activate/code/", {"code": latest_code(sms_outbox)})
    trail = list(AuditEvent.objects.filter(target_label=invited.username)
                 .order_by("created_at", "id").values_list("action", "result"))
    assert trail == [
        ("blink_user.invite", "ok"), ("activation.code_sent", "ok"),
        ("activation.code", "failed"), ("activation.code_sent", "ok"),
        ("blink_user.activate", "ok"),
    ]
    events = AuditEvent.objects.filter(action__startswith="activation")
    assert all(e.ip_address == "127.0.0.1" for e in events)
    assert all(code not in str(e.detail) and PHONE not in str(e.detail) for e in events)
