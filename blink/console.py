"""The console's Blink User Setup and Blink Users pages.

Setup reads the directory snapshot (``blink.tree``), never the directory: the first
paint holds the OU or group tree with counts, and opening a node fetches its users
as an HTML fragment. Ticking an OU or group sends its id; the server resolves it.
"""

from __future__ import annotations

from typing import Any, Literal

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_POST

from blink import tree
from blink.audit import Actor
from blink.forms_console import PHONE_UNAVAILABLE, BlinkUserEditForm, BlinkUserFilterForm
from blink.invitations import (
    PhoneUnavailable,
    blink_user_invite,
    blink_user_reinvite,
    blink_user_remove,
    blink_user_update,
)
from blink.models import BlinkUser
from clients.models import Client
from clients.permissions import ConsoleRequest, console_view

USERS_PAGE_SIZE = 50
# The setup result shown after a redirect, kept in the session for one view.
SETUP_RESULT = "blink_setup_result"
# How many names the result lists; the rest are counted.
RESULT_NAMES = 100
# Ids longer than this are no directory's (AD GUIDs and Graph ids are 36 characters).
OBJECT_ID_MAX = 64
# Statuses "Resend activation" applies to: people who have not finished activating.
RESENDABLE = (BlinkUser.Status.INVITED, BlinkUser.Status.VERIFYING_PHONE,
              BlinkUser.Status.NEEDS_EMAIL)
LIST_KEYS = ("client", "q", "status", "page")
LEFT_OUT = {
    "protected": "privileged accounts (Blink refuses those)",
    "disabled": "disabled in the directory",
    "already": "already Blink users",
}


def _id(value: str | None) -> int | None:
    """A database id from the query string or form, None for anything else."""
    if value is None or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


def _company_client(request: ConsoleRequest, value: str | None) -> Client:
    client_id = _id(value)
    if client_id is None:
        raise Http404("No such client.")
    return get_object_or_404(Client, pk=client_id, company=request.membership.company)


def _view(value: str | None) -> Literal["ou", "groups"]:
    return "groups" if value == "groups" else "ou"


def _setup_url(client: Client, view: str) -> str:
    return f"{reverse('blink-user-setup')}?client={client.pk}&view={view}"


def _can_write(request: ConsoleRequest) -> bool:
    return request.membership.can_write()


def _search(request: ConsoleRequest, client: Client, query: str) -> dict[str, Any]:
    search = tree.setup_search(client=client, query=query)
    return {"search": search, "query": query, "search_min": tree.SEARCH_MIN, "client": client,
            "rows": setup_rows_html(search.users, can_write=_can_write(request))}


@console_view()
def setup_page(request: ConsoleRequest) -> HttpResponse:
    """Pick a client, browse its directory by OU or by group, tick users and add them."""
    company = request.membership.company
    clients = tree.setup_clients(company=company)
    view = _view(request.GET.get("view"))
    context: dict[str, Any] = {"section": "setup", "clients": clients, "view": view}
    if "client" in request.GET:
        client: Client | None = _company_client(request, request.GET.get("client"))
    else:
        client = clients[0] if clients else None
    context["client"] = client
    if client is None or client not in clients:
        return render(request, "blink/setup.html", context)
    query = request.GET.get("q", "")[:200].replace("\x00", "")
    result = request.session.get(SETUP_RESULT)
    if result and result.get("client") == client.pk:
        del request.session[SETUP_RESULT]
        context["result"] = result
    context.update({
        "tree": (tree.setup_group_tree if view == "groups" else tree.setup_ou_tree)(
            client=client),
        "query": query,
        **(_search(request, client, query) if query else {}),
    })
    return render(request, "blink/setup.html", context)


TAG_PROTECTED = ' <span class="tag tag-protected">Protected: a privileged account, which Blink ' \
                'refuses</span>'
TAG_DISABLED = ' <span class="tag tag-disabled">Disabled in the directory</span>'
TAG_NO_EMAIL = ' <span class="tag tag-muted">No email: will need one</span>'


def setup_rows_html(users: list[tree.SetupUser], *, can_write: bool) -> SafeString:
    """The tree's user rows as ``<li>`` items.

    Built here rather than in a template because Expand All renders up to 10,000 of
    them: the template engine spends about 40 µs on a row, this about 3 µs.
    Every value from the directory goes through ``escape``.
    """
    rows = []
    for user in users:
        selectable = user.selectable()
        name = f'<span class="name">{escape(user.name)}</span>'
        if can_write:
            box = (f'<input type="checkbox" name="user" value="{escape(user.object_id)}">'
                   if selectable else '<input type="checkbox" disabled>')
            name = f"<label>{box} {name}</label>"
        meta = escape(user.username) + (f" · {escape(user.email)}" if user.email else "")
        tags = (f' <span class="tag tag-blink">Blink user · {escape(user.blink_label())}</span>'
                if user.blink_status else "")
        tags += (TAG_PROTECTED if user.protected else "") + (
            "" if user.enabled else TAG_DISABLED) + (
            TAG_NO_EMAIL if selectable and not user.email else "")
        rows.append(f'<li class="user{"" if selectable else " off"}">{name} '
                    f'<span class="meta">{meta}</span>{tags}</li>\n')
    return mark_safe("".join(rows))  # noqa: S308 - every interpolated value is escaped above


def _node_key(value: str | None) -> tuple[tree.NodeKind, int]:
    kind, _, pk = (value or "").partition("-")
    node_id = _id(pk)
    for known in tree.NODE_KINDS:
        if kind == known and node_id is not None:
            return known, node_id
    raise Http404("No such node.")


@require_GET
@console_view()
def setup_node(request: ConsoleRequest, client_id: int) -> HttpResponse:
    """The users directly in one OU or group, as list items for the tree (a fragment)."""
    client = get_object_or_404(Client, pk=client_id, company=request.membership.company)
    kind, pk = _node_key(request.GET.get("node"))
    offset = _id(request.GET.get("offset")) or 0
    page = tree.setup_node_users(client=client, kind=kind, pk=pk, offset=offset)
    if page is None:
        raise Http404("No such node.")
    return render(request, "blink/setup_users.html", {
        "page": page, "rows": setup_rows_html(page.users, can_write=_can_write(request)),
    })


@require_GET
@console_view()
def setup_expand(request: ConsoleRequest, client_id: int) -> HttpResponse:
    """Every node's users in one response, for Expand All (a fragment)."""
    client = get_object_or_404(Client, pk=client_id, company=request.membership.company)
    can_write = _can_write(request)
    pages = [(page, setup_rows_html(page.users, can_write=can_write))
             for page in tree.setup_all_users(client=client, view=_view(request.GET.get("view")))]
    return render(request, "blink/setup_expand.html", {"pages": pages})


@require_GET
@console_view()
def setup_search(request: ConsoleRequest, client_id: int) -> HttpResponse:
    """Users matching the search box, as a flat list (a fragment)."""
    client = get_object_or_404(Client, pk=client_id, company=request.membership.company)
    query = request.GET.get("q", "")[:200].replace("\x00", "")
    return render(request, "blink/setup_search.html", _search(request, client, query))


@require_POST
@console_view(write=True)
def setup_add(request: ConsoleRequest, client_id: int) -> HttpResponse:
    """Make the ticked users Blink users: each gets an activation email, or is listed as
    needing an email. Ids that are not this client's match nothing and are ignored."""
    client = get_object_or_404(Client, pk=client_id, company=request.membership.company)
    view = _view(request.POST.get("view"))
    if client.is_archived():
        messages.error(request, f"{client.name} is archived. Restore it on Clients before "
                                "adding Blink users.")
        return redirect(_setup_url(client, view))

    def ids(name: str) -> set[int]:
        return {pk for pk in map(_id, request.POST.getlist(name)) if pk is not None}

    object_ids = {value for value in request.POST.getlist("user")
                  if value and len(value) <= OBJECT_ID_MAX and "\x00" not in value}
    ou_ids, group_ids, root_ids = ids("ou"), ids("group"), ids("root")
    if not (object_ids or ou_ids or group_ids or root_ids):
        messages.error(request, "Tick at least one user, OU or group, then click Blink Users.")
        return redirect(_setup_url(client, view))
    selection = tree.setup_selection_resolve(
        client=client, ou_ids=ou_ids, group_ids=group_ids, root_ids=root_ids,
        object_ids=object_ids,
    )
    result = blink_user_invite(client=client, actor=Actor.from_request(request),
                               object_ids=selection.object_ids)
    request.session[SETUP_RESULT] = {
        "client": client.pk,
        "invited": len(result.invited),
        "needs_email": [[user.pk, str(user)] for user in result.needs_email[:RESULT_NAMES]],
        "needs_email_count": len(result.needs_email),
        "skipped": [list(pair) for pair in result.skipped[:RESULT_NAMES]],
        "skipped_count": len(result.skipped),
        "skipped_more": max(len(result.skipped) - RESULT_NAMES, 0),
        "left_out": [[count, LEFT_OUT[reason]] for reason, count in
                     sorted(selection.left_out.items())],
    }
    return redirect(_setup_url(client, view))


def _list_filters(data: QueryDict) -> QueryDict:
    """The Blink Users filters worth keeping when coming back to the list."""
    kept = QueryDict(mutable=True)
    for key in LIST_KEYS:
        value = data.get(key, "")
        if value and len(value) <= 200 and "\x00" not in value:
            kept[key] = value
    return kept


def _back(data: QueryDict) -> dict[str, Any]:
    """Where to go back to: as a URL, and as a query string and fields to carry it on."""
    kept = _list_filters(data)
    query = kept.urlencode()
    return {"back": query, "back_fields": kept,
            "back_url": reverse("blink-user-list") + (f"?{query}" if query else "")}


@console_view()
def users_page(request: ConsoleRequest) -> HttpResponse:
    """Every Blink user of the company or of one client, with status, search and pages."""
    company = request.membership.company
    values = request.GET.getlist("client")
    if len(values) == 1 and values[0]:
        _company_client(request, values[0])  # another company's id: 404
    form = BlinkUserFilterForm(request.GET or None, company=company)
    filters: dict[str, Any] = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {"client": data["client"], "query": data["q"], "status": data["status"]}
    users = tree.blink_user_list(company=company, **filters)
    page = Paginator(users, USERS_PAGE_SIZE).get_page(request.GET.get("page"))
    query = _list_filters(request.GET)
    query.pop("page", None)
    return render(request, "blink/users.html", {
        "section": "users", "form": form, "page": page, "query": query.urlencode(),
        "back": _list_filters(request.GET).urlencode(),
        "all_clients": filters.get("client") is None, "sms_failed": tree.SMS_FAILED,
    })


def _blink_user(request: ConsoleRequest, blink_user_id: int) -> BlinkUser:
    return get_object_or_404(
        BlinkUser.objects.select_related("client__company"),
        pk=blink_user_id, client__company=request.membership.company,
    )


@console_view(write=True)
def user_edit(request: ConsoleRequest, blink_user_id: int) -> HttpResponse:
    """Change a Blink user's email and, optionally, phone."""
    blink_user = _blink_user(request, blink_user_id)
    company = request.membership.company
    data = request.POST if request.method == "POST" else request.GET
    form = BlinkUserEditForm(request.POST or None, company=company,
                             initial={"email": blink_user.email})
    if request.method == "POST" and form.is_valid():
        try:
            blink_user_update(blink_user=blink_user, actor=Actor.from_request(request),
                              email=form.cleaned_data["email"],
                              phone=form.cleaned_data["phone"])
        except PhoneUnavailable:
            form.add_error("phone", PHONE_UNAVAILABLE)
            blink_user.refresh_from_db()
        else:
            messages.success(request, f"{blink_user} saved.")
            return redirect(_back(data)["back_url"])
    return render(request, "blink/user_edit.html", {
        "section": "users", "form": form, "blink_user": blink_user, **_back(data),
    })


CONFIRMATIONS = {
    "reset": (
        "Reset {name}?",
        "Blink sends {name} a new activation email. The old link stops working and "
        "they must verify their phone again before they can reset their password.",
        "Reset User",
    ),
    "remove": (
        "Remove {name} from Blink?",
        "{name} can no longer reset their password or unlock their account with Blink. "
        "Their directory account is not changed. You can add them again from Blink User "
        "Setup.",
        "Remove from Blink",
    ),
}


def _confirm(request: ConsoleRequest, blink_user: BlinkUser, action: str) -> HttpResponse:
    title, sentence, button = CONFIRMATIONS[action]
    name = str(blink_user)
    return render(request, "blink/user_confirm.html", {
        "section": "users", "blink_user": blink_user, "title": title.format(name=name),
        "sentence": sentence.format(name=name), "button": button, "danger": action == "remove",
        **_back(request.GET),
    })


@console_view(write=True)
def user_reset(request: ConsoleRequest, blink_user_id: int) -> HttpResponse:
    """Reset User: start activation over with a new email (confirmed first)."""
    blink_user = _blink_user(request, blink_user_id)
    if request.method != "POST":
        return _confirm(request, blink_user, "reset")
    blink_user_reinvite(blink_user=blink_user, actor=Actor.from_request(request))
    if blink_user.email:
        messages.success(request, f"{blink_user} was reset; a new activation email is on its "
                                  "way.")
    else:
        messages.warning(request, f"{blink_user} was reset but has no email address. Edit "
                                  "them to add one and Blink sends the activation email.")
    return redirect(_back(request.POST)["back_url"])


@console_view(write=True)
def user_remove(request: ConsoleRequest, blink_user_id: int) -> HttpResponse:
    """Remove from Blink (confirmed first). The directory account is untouched."""
    blink_user = _blink_user(request, blink_user_id)
    if request.method != "POST":
        return _confirm(request, blink_user, "remove")
    name = str(blink_user)
    blink_user_remove(blink_user=blink_user, actor=Actor.from_request(request))
    messages.success(request, f"{name} was removed from Blink.")
    return redirect(_back(request.POST)["back_url"])


@require_POST
@console_view(write=True)
def users_resend(request: ConsoleRequest) -> HttpResponse:
    """Resend activation to the ticked users who have not finished activating."""
    ids = {pk for pk in map(_id, request.POST.getlist("ids")) if pk is not None}
    back = _back(request.POST)["back_url"]
    if not ids:
        messages.error(request, "Tick the users to resend activation to first.")
        return redirect(back)
    chosen = list(BlinkUser.objects.select_related("client__company").filter(
        client__company=request.membership.company, pk__in=ids))
    actor = Actor.from_request(request)
    sent = 0
    for blink_user in chosen:
        if blink_user.status in RESENDABLE and blink_user.email:
            blink_user_reinvite(blink_user=blink_user, actor=actor)
            sent += 1
    left = len(chosen) - sent
    if not chosen:
        messages.error(request, "None of the ticked users is a Blink user any more. Reload "
                                "the page and tick them again.")
    if sent:
        messages.success(request, f"Activation resent to {sent} user{'s' * (sent != 1)}.")
    if left:
        messages.warning(
            request, f"{left} ticked user{'s were' if left != 1 else ' was'} left alone: "
            "already active, left the directory, or without an email address.")
    return redirect(back)
