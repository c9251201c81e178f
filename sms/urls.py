from __future__ import annotations

from django.urls import path

from sms import views, webhooks

urlpatterns = [
    path("sms/twilio/status", webhooks.twilio_status, name="sms-twilio-status"),
    path("sms/twilio/inbound", webhooks.twilio_inbound, name="sms-twilio-inbound"),
    path("dev/outbox/", views.dev_outbox, name="dev-outbox"),
    path("dev/outbox/reply", views.dev_outbox_reply, name="dev-outbox-reply"),
    path("dev/outbox/sign-in", views.dev_demo_sign_in, name="dev-demo-sign-in"),
]
