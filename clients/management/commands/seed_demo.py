"""Seed the trial: a demo MSP with one owner and one client. Safe to run again."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from blink.audit import SYSTEM
from clients.models import Client
from clients.services import client_create, company_create

DEMO_USERNAME = "admin"
DEMO_CLIENT = "Contoso (demo)"


class Command(BaseCommand):
    help = "Create the demo company, its owner and a demo client, unless they exist."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(username=DEMO_USERNAME).exists():
            self.stdout.write("Demo data already present; nothing changed.")
            return
        password = secrets.token_urlsafe(12)
        owner = User.objects.create_user(username=DEMO_USERNAME, password=password)
        company = company_create(name="Demo MSP", site_url=settings.BLINK_SITE_URL, owner=owner)
        company.support_email = "support@demo-msp.example"
        company.save(update_fields=["support_email"])
        if not Client.objects.filter(company=company, name=DEMO_CLIENT).exists():
            client_create(company=company, actor=SYSTEM, name=DEMO_CLIENT)
        # Shown once: Blink keeps only the hash. Lost it? manage.py changepassword admin
        self.stdout.write(self.style.SUCCESS(
            "\nBlink demo console\n"
            f"  sign in at {settings.BLINK_SITE_URL}/login/\n"
            f"  username:  {DEMO_USERNAME}\n"
            f"  password:  {password}\n"
            "This password is shown only now. Forgot it? "
            "Run: .venv/bin/python manage.py changepassword admin\n"
        ))
