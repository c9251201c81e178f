"""The console's Blink User Setup and Blink Users pages.

Setup reads the directory snapshot (``blink.tree``), never the directory: the first
paint holds the OU or group tree with counts, and opening a node fetches its users
as an HTML fragment. Ticking an OU or group sends its id; the server resolves it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from blink import selectors, tree
from blink.audit import Actor, audit_record
from blink.celery import PUBLISH_ERRORS
from blink.forms_console import (
    PHONE_NEEDS_PROOF,
    PHONE_UNAVAILABLE,
    BlinkUserEditForm,
    BlinkUserFilterForm,
)
from blink.invitations import (
    ClientArchived,
    PhoneNeedsProof,
    PhoneUnavailable,
    PinAskRefused,
    blink_user_invite,
    blink_user_pin_ask,
    blink_user_reinvite,
    blink_user_remove,
    blink_user_update,
)
from blink.models import AuditEvent, BlinkUser, ResetRequest
from blink.resets import ResetRefused, reset_request_create
from clients.models import Client
from clients.permissions import ConsoleRequest, console_view
from sms.models import Message

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
TAG_NEVER_EXPIRES = (' <span class="tag tag-muted" title="Active Directory ignores &quot;must '
                     'change at next logon&quot; on such an account, so Blink would not reset '
                     'it. Clear the option in Active Directory first.">Password never expires: '
                     'Blink can unlock it, not reset it</span>')


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
            TAG_NO_EMAIL if selectable and not user.email else "") + (
            TAG_NEVER_EXPIRES if selectable and user.password_never_expires else "")
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
        **_back(request.GET),  # the bulk form carries the filters on, as the row menus do
        "all_clients": filters.get("client") is None, "sms_failed": tree.SMS_FAILED,
    })


def _blink_user(request: ConsoleRequest, blink_user_id: int) -> BlinkUser:
    return get_object_or_404(
        BlinkUser.objects.select_related("client__company"),
        pk=blink_user_id, client__company=request.membership.company,
    )


@console_view(write=True)
def user_edit(request: ConsoleRequest, blink_user_id: int) -> HttpResponse:
    """Change a Blink user's email and, until they are Active, phone."""
    blink_user = _blink_user(request, blink_user_id)
    company = request.membership.company
    data = request.POST if request.method == "POST" else request.GET
    form = BlinkUserEditForm(request.POST or None, company=company,
                             phone=blink_user.status != BlinkUser.Status.ACTIVE,
                             initial={"email": blink_user.email})
    if request.method == "POST" and form.is_valid():
        try:
            blink_user = blink_user_update(
                blink_user=blink_user, actor=Actor.from_request(request),
                email=form.cleaned_data["email"], phone=form.cleaned_data.get("phone"))
        except PhoneUnavailable:
            form.add_error("phone", PHONE_UNAVAILABLE)
        except PhoneNeedsProof:  # they finished activation a moment ago
            form.add_error(None, PHONE_NEEDS_PROOF)
            blink_user.refresh_from_db()
        else:
            messages.success(request, f"{blink_user} saved.")
            if blink_user.status == BlinkUser.Status.NEEDS_EMAIL and blink_user.email:
                messages.warning(request, f"{ClientArchived.message} Once it is restored, "
                                 "tick them on Blink Users and use Resend activation.")
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
    "pin": (
        "Ask {name} for a PIN?",
        "Blink emails {name} a link to choose a PIN, after a code texted to their phone "
        "{phone}. Until they have, Blink refuses their texted resets and unlocks. Nothing "
        "else changes: their phone and the console's Reset Password and Unlock stay as they are.",
        "Email the link",
    ),
    "remove": (
        "Remove {name} from Blink?",
        "{name} can no longer reset their password or unlock their account with Blink. "
        "Their directory account is not changed. You can add them again from Blink User "
        "Setup.",
        "Remove from Blink",
    ),
}


def _refused_record(blink_user: BlinkUser, actor: Actor, action: str, reason: str) -> None:
    """An admin's action Blink refused, for the audit trail (SECURITY.md case 15)."""
    audit_record(company=blink_user.client.company, client=blink_user.client, actor=actor,
                 action=action, target=blink_user.username, result=AuditEvent.Result.REFUSED,
                 detail={"channel": "console", "reason": reason[:300]})


def _confirm(request: ConsoleRequest, blink_user: BlinkUser, action: str) -> HttpResponse:
    title, sentence, button = CONFIRMATIONS[action]
    name = str(blink_user)
    return render(request, "blink/user_confirm.html", {
        "section": "users", "blink_user": blink_user, "title": title.format(name=name),
        "sentence": sentence.format(name=name, phone=blink_user.masked_phone()),
        "button": button, "danger": action == "remove",
        **_back(request.GET),
    })


@console_view(write=True)
def user_reset(request: ConsoleRequest, blink_user_id: int) -> HttpResponse:
    """Reset User: start activation over with a new email (confirmed first)."""
    blink_user = _blink_user(request, blink_user_id)
    if request.method != "POST":
        return _confirm(request, blink_user, "reset")
    actor = Actor.from_request(request)
    try:
        if blink_user_reinvite(blink_user=blink_user, actor=actor) is None:
            raise Http404("This Blink user was removed.")
    except ClientArchived as refused:
        _refused_record(blink_user, actor, "blink_user.reinvite", refused.message)
        messages.error(request, refused.message)
        return redirect(_back(request.POST)["back_url"])
    if blink_user.email:
        messages.success(request, f"{blink_user} was reset; a new activation email is on its "
                                  "way.")
    else:
        messages.warning(request, f"{blink_user} was reset but has no email address. Edit "
                                  "them to add one and Blink sends the activation email.")
    return redirect(_back(request.POST)["back_url"])


@console_view(write=True)
def user_pin_ask(request: ConsoleRequest, blink_user_id: int) -> HttpResponse:
    """Ask for a PIN: email an Active user without one a link to choose it (confirmed
    first)."""
    blink_user = _blink_user(request, blink_user_id)
    if request.method != "POST":
        return _confirm(request, blink_user, "pin")
    actor = Actor.from_request(request)
    try:
        blink_user_pin_ask(blink_user=blink_user, actor=actor)
    except PinAskRefused as refused:
        _refused_record(blink_user, actor, "blink_user.pin_ask", refused.message)
        messages.error(request, refused.message)
    else:
        messages.success(request, f"A link to choose a PIN is on its way to {blink_user}.")
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
            try:
                if blink_user_reinvite(blink_user=blink_user, actor=actor,
                                       only=RESENDABLE) is None:
                    continue  # activated (or removed) since the page was drawn
            except ClientArchived:
                continue
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
            "already active, left the directory, of an archived client, or without an email "
            "address.")
    return redirect(back)


# -- Reset Password and Unlock ---------------------------------------------------------------
#
# Confirmed first; the POST records a request (blink.resets) that a worker carries out, and
# the admin lands on its status page, which asks reset_request_status every second until it
# has finished. Nothing here ever holds the password: it exists only in the worker and the SMS.

RESET_CONFIRMATIONS = {
    ResetRequest.Kind.RESET: (
        "Reset {name}'s password?",
        "Blink sets a new temporary password in the directory and texts it to {name}'s phone "
        "({phone}). {name} must choose a new password at the next Windows sign-in. You will "
        "not see the password.",
        "Reset Password",
    ),
    ResetRequest.Kind.UNLOCK: (
        "Unlock {name}'s account?",
        "Blink unlocks the account in the directory and texts {name} ({phone}) that it is "
        "unlocked. The password does not change.",
        "Unlock",
    ),
}
QUEUE_DOWN = ("Blink could not queue this request: its task queue (Redis) is not answering, so "
              "nothing was changed and nothing was texted. Try again in a few minutes; if this "
              "keeps happening, check Redis and the workers (/healthz says which is down).")


def _reset_confirm(request: ConsoleRequest, blink_user: BlinkUser, kind: str, *,
                   error: str = "", status: int = 200, refused: bool = False) -> HttpResponse:
    title, sentence, button = RESET_CONFIRMATIONS[ResetRequest.Kind(kind)]
    name = str(blink_user)
    phone = blink_user.masked_phone() or "no phone on record"
    return render(request, "blink/reset_confirm.html", {
        "section": "users", "blink_user": blink_user, "kind": kind,
        "title": title.format(name=name), "sentence": sentence.format(name=name, phone=phone),
        "button": button, "error": error, "refused": refused,
        "unlocks_too": kind == ResetRequest.Kind.RESET and blink_user.client.unlock_on_reset,
        "never_expires": kind == ResetRequest.Kind.RESET and selectors.password_never_expires(
            blink_user=blink_user),
        **_back(request.POST if request.method == "POST" else request.GET),
    }, status=status)


def _reset_or_unlock(request: ConsoleRequest, blink_user_id: int, kind: str) -> HttpResponse:
    blink_user = _blink_user(request, blink_user_id)
    if request.method != "POST":
        return _reset_confirm(request, blink_user, kind)
    actor = Actor.from_request(request)
    try:
        reset = reset_request_create(blink_user=blink_user, actor=actor,
                                     channel=ResetRequest.Channel.CONSOLE, kind=kind)
    except ResetRefused as refused:
        _refused_record(blink_user, actor, f"{kind}.request", refused.message)
        return _reset_confirm(request, blink_user, kind, error=refused.message, status=409,
                              refused=True)
    except PUBLISH_ERRORS:
        # blink.resets has already recorded the request as failed: nothing is left queued.
        return _reset_confirm(request, blink_user, kind, error=QUEUE_DOWN, status=503)
    if reset.joined:
        messages.info(request, f"A request for {blink_user} was already under way; this is it. "
                               "Blink does not start a second one.")
    back = _back(request.POST)["back"]
    return redirect(reverse("reset-request", args=[reset.pk]) + (f"?{back}" if back else ""))


@require_http_methods(["GET", "HEAD", "POST"])
@console_view(write=True)
def user_reset_password(request: ConsoleRequest, blink_user_id: int) -> HttpResponse:
    """Reset Password: a new temporary password, texted to the user (confirmed first)."""
    return _reset_or_unlock(request, blink_user_id, ResetRequest.Kind.RESET)


@require_http_methods(["GET", "HEAD", "POST"])
@console_view(write=True)
def user_unlock(request: ConsoleRequest, blink_user_id: int) -> HttpResponse:
    """Unlock: clear the directory lockout, keep the password (confirmed first)."""
    return _reset_or_unlock(request, blink_user_id, ResetRequest.Kind.UNLOCK)


@dataclass(frozen=True)
class ResetProgress:
    """Where a request is, as the status page and its JSON show it.

    ``status`` is queued, running, sending (the directory is done; the text is on its way
    to the provider), sent or failed; ``reason`` says why it failed, in words. ``step`` is
    how far it got: 0 queued, 1 in the directory, 2 texted (where a failure happened).
    """

    status: str
    label: str
    detail: str
    reason: str
    finished: bool
    step: int


def reset_progress(reset: ResetRequest) -> ResetProgress:
    """The request's state, with its SMS's: "sent" only once the provider has the text."""
    blink_user = reset.blink_user
    name = str(blink_user)
    unlock = reset.kind == ResetRequest.Kind.UNLOCK
    if reset.status == ResetRequest.Status.QUEUED:
        return ResetProgress("queued", "Queued", "Waiting for a Blink worker to pick it up.",
                             "", finished=False, step=0)
    if reset.status == ResetRequest.Status.RUNNING:
        return ResetProgress(
            "running", "Unlocking" if unlock else "Resetting",
            "Blink is unlocking the account in the directory." if unlock else
            "Blink is setting a new temporary password in the directory.", "", finished=False,
            step=1)
    if reset.status == ResetRequest.Status.FAILED:
        told = reset.message is not None and reset.message.status not in (
            Message.Status.FAILED, Message.Status.UNDELIVERED)
        support = blink_user.client.company.support_email or "your IT support"
        detail = (f"Blink texted {name} that it could not do it and to contact {support}."
                  if told else f"Nothing was texted to {name}.")
        return ResetProgress("failed", "Failed", detail,
                             reset.reason or "The request failed.", finished=True,
                             step=1 if reset.started_at else 0)
    done = "The account is unlocked" if unlock else "The password was reset"
    message = reset.message
    if message is not None and message.status in (Message.Status.QUEUED,
                                                   Message.Status.SENDING):
        again = (" The SMS provider did not take it at the first try; Blink tries again "
                 "with the same text." if message.error_code else "")
        return ResetProgress("sending", "Texting", f"{done}; Blink is texting {name}.{again}",
                             "", finished=False, step=2)
    if message is not None and message.status in (Message.Status.FAILED,
                                                   Message.Status.UNDELIVERED):
        return ResetProgress(
            "failed", "Failed", f"{done}, but {name} did not get the text.",
            f"The text to {blink_user.masked_phone()} could not be delivered: "
            f"{message.error_message or 'the SMS provider refused it.'}"
            + ("" if unlock else " Fix that, then reset the password again."), finished=True,
            step=2)
    phone = blink_user.masked_phone()
    detail = (f"{done}; Blink texted {phone} to say so." if unlock else
              f"{done} and texted to {phone}. {name} must choose a new one at the next "
              "Windows sign-in.")
    return ResetProgress("sent", "Sent", detail, "", finished=True, step=2)


STEP_MARKS = {"done": "✓", "current": "…", "failed": "✗", "todo": ""}


def reset_steps(progress: ResetProgress, kind: str) -> list[dict[str, str]]:
    """The three steps, as the status page shows them and its JSON sends them for
    reset_status.js to redraw."""
    labels = ["Queued", "Unlocking" if kind == ResetRequest.Kind.UNLOCK else "Resetting",
              "Sent"]
    steps = []
    for index, label in enumerate(labels):
        if index < progress.step or (index == progress.step and progress.status == "sent"):
            state = "done"
        elif index == progress.step:
            state = "failed" if progress.status == "failed" else "current"
        else:
            state = "todo"
        steps.append({"label": label, "state": state, "mark": STEP_MARKS[state]})
    return steps


def _reset_request(request: ConsoleRequest, request_id: int) -> ResetRequest:
    return get_object_or_404(
        ResetRequest.objects.select_related("blink_user__client__company", "message"),
        pk=request_id, blink_user__client__company=request.membership.company,
    )


@require_GET
@console_view()
def reset_request_page(request: ConsoleRequest, request_id: int) -> HttpResponse:
    """A reset or unlock moving queued → resetting → sent / failed. Read-only members may
    watch it too: it shows no secret and changes nothing."""
    reset = _reset_request(request, request_id)
    blink_user = reset.blink_user
    progress = reset_progress(reset)
    confirm = "blink-user-unlock" if reset.kind == ResetRequest.Kind.UNLOCK else \
        "blink-user-reset-password"
    back = _back(request.GET)
    return render(request, "blink/reset_status.html", {
        "section": "users", "reset": reset, "blink_user": blink_user,
        "progress": progress, "steps": reset_steps(progress, reset.kind),
        "again_url": reverse(confirm, args=[blink_user.pk]) + (
            f"?{back['back']}" if back["back"] else ""),
        **back,
    })


@require_GET
@console_view()
def reset_request_status(request: ConsoleRequest, request_id: int) -> JsonResponse:
    """The status page's JSON: status, label, detail, reason, finished, and the steps as
    the page draws them."""
    reset = _reset_request(request, request_id)
    progress = reset_progress(reset)
    response = JsonResponse({**asdict(progress), "steps": reset_steps(progress, reset.kind)})
    response["Cache-Control"] = "no-store"
    return response
