"""Console pages for a client's directory connections."""

from __future__ import annotations

from django.contrib import messages
from django.db import IntegrityError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from blink.audit import Actor
from clients.models import Client
from clients.permissions import ConsoleRequest, console_view
from directory import services
from directory.demo import demo_directory_seed
from directory.forms import FORMS
from directory.models import Connection

BUSY = (Connection.Outcome.QUEUED, Connection.Outcome.RUNNING)


def _client(request: ConsoleRequest, client_id: int) -> Client:
    return get_object_or_404(Client, pk=client_id, company=request.membership.company)


def _connection(request: ConsoleRequest, client_id: int, connection_id: int) -> Connection:
    return get_object_or_404(
        Connection.objects.select_related("client__company"),
        pk=connection_id, client_id=client_id, client__company=request.membership.company,
    )


@console_view()
def client_directory(request: ConsoleRequest, client_id: int) -> HttpResponse:
    client = _client(request, client_id)
    connections = list(Connection.objects.filter(client=client))
    kinds = {c.kind for c in connections}
    return render(request, "directory/client_directory.html", {
        "section": "clients", "client": client, "connections": connections,
        "can_add": [kind for kind in Connection.Kind if kind not in kinds],
        # Reload while a test or sync is on its way, so the outcome appears by itself.
        "refresh": any(c.last_test_status in BUSY or c.last_sync_status in BUSY
                       for c in connections),
    })


@console_view(write=True)
def connection_add(request: ConsoleRequest, client_id: int, kind: str) -> HttpResponse:
    client = _client(request, client_id)
    actor = Actor.from_request(request)
    if kind == Connection.Kind.DEMO:
        if request.method != "POST":
            return redirect("client-directory", client_id=client.pk)
        try:
            connection = services.connection_save(client=client, actor=actor, kind=kind,
                                                  parameters={}, secrets={})
        except IntegrityError:
            messages.error(request, "This client already has a demo directory.")
            return redirect("client-directory", client_id=client.pk)
        demo_directory_seed(connection)
        services.directory_sync_request(connection=connection, actor=actor)
        messages.success(request, "Demo directory added. Its users appear after the first sync.")
        return redirect("client-directory", client_id=client.pk)
    form_class = FORMS.get(kind)
    if form_class is None:
        raise Http404("No such kind of directory.")
    if Connection.objects.filter(client=client, kind=kind).exists():
        messages.error(request, "This client already has a connection of this kind: edit it.")
        return redirect("client-directory", client_id=client.pk)
    form = form_class(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        connection = services.connection_save(
            client=client, actor=actor, kind=kind, parameters=form.parameters(),
            secrets=form.secrets(), queue=form.cleaned_data["queue"],
            monitor_lockouts=form.cleaned_data["monitor_lockouts"],
        )
        services.connection_test_request(connection=connection, actor=actor)
        messages.success(request, "Connection saved. Blink is testing it now.")
        return redirect("client-directory", client_id=client.pk)
    return render(request, "directory/connection_form.html", {
        "section": "clients", "client": client, "form": form,
        "kind_label": Connection.Kind(kind).label,
    })


@console_view(write=True)
def connection_edit(request: ConsoleRequest, client_id: int, connection_id: int) -> HttpResponse:
    connection = _connection(request, client_id, connection_id)
    form_class = FORMS.get(connection.kind)
    if form_class is None:
        raise Http404("The demo directory has nothing to edit.")
    if request.method == "POST":
        form = form_class(request.POST, request.FILES or None, editing=True,
                          stored=connection.parameters)
        if form.is_valid():
            actor = Actor.from_request(request)
            services.connection_save(
                client=connection.client, actor=actor, kind=connection.kind,
                parameters={**connection.parameters, **form.parameters()},
                secrets=form.secrets(), queue=form.cleaned_data["queue"],
                monitor_lockouts=form.cleaned_data["monitor_lockouts"], connection=connection,
            )
            services.connection_test_request(connection=connection, actor=actor)
            messages.success(request, "Connection saved. Blink is testing it now.")
            return redirect("client-directory", client_id=client_id)
    else:
        initial = dict(connection.parameters)
        initial["scope_dns"] = "\n".join(initial.get("scope_dns", []))
        initial.update(queue=connection.queue, monitor_lockouts=connection.monitor_lockouts)
        form = form_class(initial=initial, editing=True)
    return render(request, "directory/connection_form.html", {
        "section": "clients", "client": connection.client, "form": form,
        "connection": connection, "kind_label": connection.get_kind_display(),
    })


@require_POST
@console_view(write=True)
def connection_remove(request: ConsoleRequest, client_id: int, connection_id: int) -> HttpResponse:
    connection = _connection(request, client_id, connection_id)
    services.connection_remove(connection=connection, actor=Actor.from_request(request))
    messages.success(request, f"{connection.get_kind_display()} connection removed.")
    return redirect("client-directory", client_id=client_id)


@require_POST
@console_view(write=True)
def connection_test(request: ConsoleRequest, client_id: int, connection_id: int) -> HttpResponse:
    connection = _connection(request, client_id, connection_id)
    services.connection_test_request(connection=connection, actor=Actor.from_request(request))
    return redirect("client-directory", client_id=client_id)


@require_POST
@console_view(write=True)
def connection_sync(request: ConsoleRequest, client_id: int, connection_id: int) -> HttpResponse:
    connection = _connection(request, client_id, connection_id)
    services.directory_sync_request(connection=connection, actor=Actor.from_request(request))
    return redirect("client-directory", client_id=client_id)
