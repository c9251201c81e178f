"""Create an MSP company and its first owner, for a new production install."""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from clients.services import company_create


class Command(BaseCommand):
    help = "Create a company and its owner account. Asks for the owner's password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="The MSP's name.")
        parser.add_argument("--site-url", required=True,
                            help="Blink's public address, e.g. https://blink.example.com.")
        parser.add_argument("--owner", required=True, help="The owner's console username.")
        parser.add_argument("--email", default="", help="The owner's email address.")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(username=options["owner"]).exists():
            raise CommandError(f"A console account named {options['owner']!r} already exists.")
        password = getpass.getpass("Owner's password: ")
        if password != getpass.getpass("Again: "):
            raise CommandError("The passwords differ; nothing was created.")
        owner = User(username=options["owner"], email=options["email"])
        try:
            password_validation.validate_password(password, owner)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        with transaction.atomic():
            owner.set_password(password)
            owner.save()
            company = company_create(name=options["name"], site_url=options["site_url"],
                                     owner=owner)
        self.stdout.write(self.style.SUCCESS(
            f"Created {company.name} with owner {owner.username}. Sign in at "
            f"{company.link('/login/')}"
        ))
