"""Seed the trial: a demo MSP, its owner, and a client on the demo directory. Safe to rerun."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from blink.audit import SYSTEM
from clients.models import Client, Company
from clients.services import client_create, company_create
from directory.demo import demo_directory_seed
from directory.models import Connection
from directory.services import connection_save, directory_sync

DEMO_USERNAME = "admin"
DEMO_CLIENT = "Contoso (demo)"


class Command(BaseCommand):
    help = "Create the demo company, its owner and a demo client, unless they exist."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        owner = User.objects.filter(username=DEMO_USERNAME).first()
        password = ""
        if owner is None:
            password = secrets.token_urlsafe(12)
            owner = User.objects.create_user(username=DEMO_USERNAME, password=password)
            company = company_create(name="Demo MSP", site_url=settings.BLINK_SITE_URL,
                                     owner=owner)
            company.support_email = "support@demo-msp.example"
            company.save(update_fields=["support_email"])
        else:
            company = Company.objects.get(memberships__user=owner)
        client = Client.objects.filter(company=company, name=DEMO_CLIENT).first()
        if client is None:
            client = client_create(company=company, actor=SYSTEM, name=DEMO_CLIENT)
        connection = Connection.objects.filter(client=client, kind=Connection.Kind.DEMO).first()
        if connection is None:
            connection = connection_save(client=client, actor=SYSTEM, kind="demo",
                                         parameters={}, secrets={})
            demo_directory_seed(connection)
            directory_sync(connection_id=connection.pk, claimed=True)
        if not password:
            self.stdout.write("Demo data already present; nothing changed.")
            return
        # Shown once: Blink keeps only the hash.
        self.stdout.write(self.style.SUCCESS(
            "\nBlink demo console\n"
            f"  sign in at {settings.BLINK_SITE_URL}/login/\n"
            f"  username:  {DEMO_USERNAME}\n"
            f"  password:  {password}\n"
            "This password is shown only now. Forgot it? "
            "Run: .venv/bin/python manage.py changepassword admin\n"
        ))
