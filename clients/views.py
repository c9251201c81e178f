"""Console pages on the MSP side: settings, branding and clients."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from blink.audit import Actor
from blink.emails import activation_email_render
from blink.invitations import client_pin_ask as client_pin_ask_all
from blink.selectors import pin_missing_count
from clients import services
from clients.branding import EMAIL_PLACEHOLDERS, colour_warnings
from clients.forms import BrandingForm, ClientForm, CompanySettingsForm
from clients.models import Branding, Client
from clients.permissions import ConsoleRequest, console_view, require_write

SAMPLE_FIRST_NAME = "Alex"
SAMPLE_FULL_NAME = "Alex Morgan"


@console_view()
def settings_general(request: ConsoleRequest) -> HttpResponse:
    company = request.membership.company
    if request.method == "POST":
        require_write(request)
        form = CompanySettingsForm(request.POST, company=company)
        if form.is_valid():
            services.company_settings_update(
                company=company, actor=Actor.from_request(request), **form.cleaned_data
            )
            messages.success(request, "Company settings saved.")
            return redirect("settings-general")
    else:
        form = CompanySettingsForm(
            company=company,
            initial={
                "name": company.name,
                "support_email": company.support_email,
                "notify_support_on_reset": company.notify_support_on_reset,
                "site_url": company.site_url,
                "default_country": company.default_country,
                "sms_number": str(company.sms_number or ""),
                "messaging_service_sid": company.messaging_service_sid,
            },
        )
    return render(request, "clients/settings_general.html", {"form": form, "section": "general"})


def _branding_preview(request: ConsoleRequest, branding: Branding) -> str:
    company = request.membership.company
    email = activation_email_render(
        company=company,
        branding=branding,
        first_name=SAMPLE_FIRST_NAME,
        full_name=SAMPLE_FULL_NAME,
        link=company.link("/activate/preview"),
        logo_url=branding.logo_url(),
    )
    return email.html


@console_view()
def settings_branding(request: ConsoleRequest) -> HttpResponse:
    company = request.membership.company
    branding, _ = Branding.objects.get_or_create(company=company)
    if request.method == "POST":
        require_write(request)
        form = BrandingForm(request.POST, request.FILES)
        if form.is_valid():
            data = form.cleaned_data
            branding = services.branding_update(
                company=company,
                actor=Actor.from_request(request),
                primary_colour=data["primary_colour"],
                accent_colour=data["accent_colour"],
                email_text=data["email_text"],
                logo=data["logo"],
                remove_logo=data["remove_logo"],
            )
            messages.success(request, "Branding saved.")
            for warning in colour_warnings(
                primary=branding.primary_colour, accent=branding.accent_colour
            ):
                messages.warning(request, warning)
            return redirect("settings-branding")
    else:
        form = BrandingForm(
            initial={
                "primary_colour": branding.primary_colour,
                "accent_colour": branding.accent_colour,
                "email_text": branding.email_text,
            }
        )
    return render(
        request,
        "clients/settings_branding.html",
        {
            "form": form,
            "branding": branding,
            "section": "branding",
            "placeholders": EMAIL_PLACEHOLDERS,
            "preview_html": _branding_preview(request, branding),
            "warnings": colour_warnings(
                primary=branding.primary_colour, accent=branding.accent_colour
            ),
        },
    )


@require_POST
@console_view()
def branding_preview(request: ConsoleRequest) -> HttpResponse:
    """The activation email for unsaved branding, for the page's live preview. Saves nothing."""
    company = request.membership.company
    saved, _ = Branding.objects.get_or_create(company=company)
    form = BrandingForm(request.POST)
    # The logo is not re-uploaded on each keystroke; the saved one is shown.
    form.fields["logo"].required = False
    if not form.is_valid():
        errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
        return JsonResponse({"errors": errors}, status=400)
    data = form.cleaned_data
    draft = Branding(
        company=company,
        logo=saved.logo,
        logo_content_type=saved.logo_content_type,
        primary_colour=data["primary_colour"].lower(),
        accent_colour=data["accent_colour"].lower(),
        email_text=data["email_text"],
    )
    return JsonResponse(
        {
            "html": _branding_preview(request, draft),
            "warnings": colour_warnings(primary=draft.primary_colour, accent=draft.accent_colour),
        }
    )


@require_GET
@cache_control(public=True, max_age=365 * 24 * 3600, immutable=True)
def branding_logo(request: HttpRequest, company_id: int, version: str) -> HttpResponse:
    """A company's logo, public because users' emails and pages show it."""
    branding = get_object_or_404(Branding, company_id=company_id)
    if not branding.has_logo() or version != branding.logo_version():
        return HttpResponse(status=404)
    return HttpResponse(bytes(branding.logo), content_type=branding.logo_content_type)


@console_view()
def client_list(request: ConsoleRequest) -> HttpResponse:
    show_archived = request.GET.get("archived") == "1"
    clients = Client.objects.filter(company=request.membership.company)
    clients = clients.exclude(archived_at=None) if show_archived else clients.active()
    return render(
        request,
        "clients/client_list.html",
        {"clients": clients, "show_archived": show_archived, "section": "clients"},
    )


@console_view(write=True)
def client_add(request: ConsoleRequest) -> HttpResponse:
    company = request.membership.company
    form = ClientForm(request.POST or None, company=company)
    if request.method == "POST" and form.is_valid():
        client = services.client_create(
            company=company, actor=Actor.from_request(request), **form.cleaned_data
        )
        messages.success(request, f"Client “{client.name}” added.")
        return redirect("client-list")
    return render(request, "clients/client_form.html", {"form": form, "section": "clients"})


@console_view(write=True)
def client_edit(request: ConsoleRequest, client_id: int) -> HttpResponse:
    company = request.membership.company
    client = get_object_or_404(Client, pk=client_id, company=company)
    if request.method == "POST":
        form = ClientForm(request.POST, company=company, instance=client)
        if form.is_valid():
            needed_pin = client.sms_reset_needs_pin
            services.client_update(
                client=client, actor=Actor.from_request(request), **form.cleaned_data
            )
            messages.success(request, f"Client “{client.name}” saved.")
            if client.sms_reset_needs_pin and not needed_pin:
                _pin_missing_warn(request, client)
            return redirect("client-list")
    else:
        form = ClientForm(
            company=company,
            instance=client,
            initial={
                "name": client.name,
                "temp_password_length": client.temp_password_length,
                "unlock_on_reset": client.unlock_on_reset,
                "sms_reset_needs_pin": client.sms_reset_needs_pin,
            },
        )
    return render(request, "clients/client_form.html", {
        "form": form, "client": client, "section": "clients",
        "pin_missing": (pin_missing_count(client=client)
                        if client.sms_reset_needs_pin and not client.is_archived() else 0),
    })


def _pin_missing_warn(request: HttpRequest, client: Client) -> None:
    """Say who the PIN just turned on leaves unable to reset by SMS, and what to do."""
    missing = pin_missing_count(client=client)
    if not missing:
        return
    who = "Active user has" if missing == 1 else "Active users have"
    messages.warning(
        request,
        f"{missing} {who} no PIN yet. Blink refuses their texted resets until they "
        "choose one: edit the client to email them all a link to choose it, or use Ask for "
        "a PIN on Blink Users. You can still reset them from the console.",
    )


@require_POST
@console_view(write=True)
def client_pin_ask(request: ConsoleRequest, client_id: int) -> HttpResponse:
    """Email every Active user of the client who has no PIN a link to choose one."""
    client = get_object_or_404(Client, pk=client_id, company=request.membership.company)
    if client.is_archived():
        messages.error(request, "This client is archived; restore it first.")
        return redirect("client-edit", client.pk)
    if not client.sms_reset_needs_pin:
        messages.info(request, f"{client.name}'s SMS reset needs no PIN: nobody was asked.")
        return redirect("client-edit", client.pk)
    asked = client_pin_ask_all(client=client, actor=Actor.from_request(request))
    left = pin_missing_count(client=client) - asked
    if asked:
        messages.success(request, f"A link to choose a PIN is on its way to {asked} "
                                  f"user{pluralize(asked)}.")
    if left:
        messages.warning(request, f"{left} user{pluralize(left)} without a PIN "
                                  f"{pluralize(left, 'has,have')} no email address: edit them "
                                  "on Blink Users to add one, then ask again.")
    return redirect("client-edit", client.pk)


@require_POST
@console_view(write=True)
def client_archive(request: ConsoleRequest, client_id: int) -> HttpResponse:
    client = get_object_or_404(Client, pk=client_id, company=request.membership.company)
    services.client_archive(client=client, actor=Actor.from_request(request))
    messages.success(request, f"Client “{client.name}” archived. You can restore it any time.")
    return redirect("client-list")


@require_POST
@console_view(write=True)
def client_restore(request: ConsoleRequest, client_id: int) -> HttpResponse:
    client = get_object_or_404(Client, pk=client_id, company=request.membership.company)
    services.client_restore(client=client, actor=Actor.from_request(request))
    messages.success(request, f"Client “{client.name}” restored.")
    return redirect("client-list")
