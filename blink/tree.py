"""Reads for the console's Blink User Setup tree and Blink Users list.

Everything here reads the directory *snapshot* (``directory.Entry``, ``GroupMember``)
and Blink's own rows, never the directory itself, and every function takes the
tenant explicitly. Each one runs a fixed number of queries whatever the size of
the directory: counts are aggregated in SQL, trees are assembled in Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery

from blink.models import BlinkUser
from clients.models import Client, Company
from directory.models import Connection, Entry, GroupMember
from sms.models import Message

# Users shown per opened node; a node holding more offers "Show more".
NODE_PAGE = 250
# Matches shown for a search; the page says when there are more.
SEARCH_LIMIT = 200
# The least a search looks for: one letter would match most of a directory.
SEARCH_MIN = 2

NodeKind = Literal["ou", "group", "root"]
NODE_KINDS: tuple[NodeKind, ...] = ("ou", "group", "root")

# Outbound SMS states that mean the user never got the message.
SMS_FAILED = (Message.Status.FAILED, Message.Status.UNDELIVERED)


def setup_clients(*, company: Company) -> list[Client]:
    """The company's active clients that have a directory connected, for Select Client."""
    return list(
        Client.objects.active()
        .filter(company=company, connections__isnull=False)
        .distinct()
        .order_by("name")
    )


@dataclass
class TreeNode:
    """An OU, a group, or a connection's users outside any OU, with its user counts."""

    kind: NodeKind
    pk: int
    name: str
    # Users directly in the node (what opening it lists).
    direct: int = 0
    # Users in the node and every node below it.
    total: int = 0
    children: list[TreeNode] = field(default_factory=list)
    # Shown open on the first paint.
    open: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.pk}"


@dataclass
class TreeSection:
    """One connection's part of the tree."""

    connection: Connection
    nodes: list[TreeNode]

    def steps(self) -> Iterator[tuple[str, TreeNode]]:
        """The tree as a flat run of ("open", node) / ("close", node), so one template
        loop renders any depth without recursive includes."""
        stack: list[tuple[TreeNode, bool]] = [(node, False) for node in reversed(self.nodes)]
        while stack:
            node, closing = stack.pop()
            if closing:
                yield "close", node
                continue
            yield "open", node
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.children))


# A tree with this few top-level nodes starts with them open (one "Contoso" OU is
# common and tells the admin nothing until opened).
OPEN_TOP = 3


@dataclass
class SetupTree:
    sections: list[TreeSection]
    users: int
    nodes: int

    def __post_init__(self) -> None:
        top = [node for section in self.sections for node in section.nodes]
        if len(top) <= OPEN_TOP:
            for node in top:
                node.open = True


def _sort(nodes: list[TreeNode]) -> None:
    nodes.sort(key=lambda node: node.name.casefold())


def setup_ou_tree(*, client: Client) -> SetupTree:
    """The client's OUs as a tree with user counts, without the users themselves.

    Users that sit in no OU (every Entra user, or AD users above the synced OUs)
    appear as one "Users not in an OU" node per connection.
    """
    connections = list(Connection.objects.filter(client=client).order_by("kind", "pk"))
    ous = Entry.objects.filter(connection__client=client, kind=Entry.Kind.ORG_UNIT)
    direct: dict[tuple[int, int | None], int] = {
        (row["connection_id"], row["parent_id"]): row["n"]
        for row in Entry.objects.filter(connection__client=client, kind=Entry.Kind.USER)
        .values("connection_id", "parent_id").annotate(n=Count("pk")).order_by()
    }
    nodes: dict[int, TreeNode] = {}
    parents: dict[int, tuple[int, int | None]] = {}
    for pk, connection_id, parent_id, name in ous.values_list(
        "pk", "connection_id", "parent_id", "name"
    ):
        nodes[pk] = TreeNode("ou", pk, name, direct=direct.get((connection_id, pk), 0))
        parents[pk] = (connection_id, parent_id)
    roots: dict[int, list[TreeNode]] = defaultdict(list)
    for child, (home, parent_pk) in parents.items():
        parent = nodes.get(parent_pk) if parent_pk is not None else None
        (parent.children if parent is not None else roots[home]).append(nodes[child])

    def total(node: TreeNode, seen: set[int]) -> int:
        seen.add(node.pk)
        _sort(node.children)
        node.total = node.direct + sum(total(c, seen) for c in node.children if c.pk not in seen)
        return node.total

    sections = []
    users = 0
    for connection in connections:
        top = roots.get(connection.pk, [])
        _sort(top)
        seen: set[int] = set()
        for node in top:
            total(node, seen)
        loose = direct.get((connection.pk, None), 0)
        if loose:
            top.append(TreeNode("root", connection.pk, "Users not in an OU", direct=loose,
                                total=loose))
        users += sum(n for (conn, _), n in direct.items() if conn == connection.pk)
        sections.append(TreeSection(connection, top))
    return SetupTree(sections=sections, users=users, nodes=len(nodes))


def setup_group_tree(*, client: Client) -> SetupTree:
    """The client's groups with their member counts (nesting is already resolved, so a
    group lists every user in it, directly or through other groups)."""
    connections = list(Connection.objects.filter(client=client).order_by("kind", "pk"))
    members = dict(
        GroupMember.objects.filter(group__connection__client=client)
        .values_list("group_id").annotate(n=Count("pk")).order_by()
    )
    by_connection: dict[int, list[TreeNode]] = defaultdict(list)
    groups = Entry.objects.filter(connection__client=client, kind=Entry.Kind.GROUP)
    count = 0
    for pk, connection_id, name in groups.values_list("pk", "connection_id", "name"):
        n = members.get(pk, 0)
        by_connection[connection_id].append(TreeNode("group", pk, name, direct=n, total=n))
        count += 1
    sections = []
    for connection in connections:
        nodes = by_connection.get(connection.pk, [])
        _sort(nodes)
        sections.append(TreeSection(connection, nodes))
    users = Entry.objects.filter(connection__client=client, kind=Entry.Kind.USER).count()
    return SetupTree(sections=sections, users=users, nodes=count)


USER_COLUMNS = ("pk", "object_id", "name", "username", "upn", "email", "enabled", "protected",
                "password_never_expires", "parent_id", "connection_id", "blink_status")
BLINK_LABELS = dict(BlinkUser.Status.choices)


@dataclass(frozen=True, slots=True)
class SetupUser:
    """A directory user as the setup tree shows it."""

    pk: int
    object_id: str
    name: str
    username: str
    upn: str
    email: str
    enabled: bool
    protected: bool
    password_never_expires: bool
    parent_id: int | None
    connection_id: int
    # The Blink user's status, "" when the user is not a Blink user yet.
    blink_status: str | None

    def blink_label(self) -> str:
        return BLINK_LABELS.get(self.blink_status or "", "")

    def selectable(self) -> bool:
        return self.enabled and not self.protected and not self.blink_status


def _users(client: Client) -> QuerySet[Entry, tuple[object, ...]]:
    """The client's directory users with their Blink status, as ``USER_COLUMNS`` rows."""
    status = BlinkUser.objects.filter(
        connection_id=OuterRef("connection_id"), object_id=OuterRef("object_id")
    ).values("status")[:1]
    return (
        Entry.objects.filter(connection__client=client, kind=Entry.Kind.USER)
        .annotate(blink_status=Subquery(status))
        .order_by("name", "username", "pk")
        .values_list(*USER_COLUMNS)
    )


def _rows(users: Iterable[tuple[object, ...]]) -> list[SetupUser]:
    return [SetupUser(*row) for row in users]  # type: ignore[arg-type]


@dataclass
class NodeUsers:
    node: TreeNode
    users: list[SetupUser]
    offset: int

    @property
    def more(self) -> int:
        """How many users of the node come after this page."""
        return max(self.node.direct - self.offset - len(self.users), 0)

    @property
    def next_offset(self) -> int:
        return self.offset + len(self.users)


def _node(client: Client, kind: NodeKind, pk: int) -> TreeNode | None:
    if kind == "root":
        connection = Connection.objects.filter(client=client, pk=pk).first()
        return None if connection is None else TreeNode("root", pk, "Users not in an OU")
    wanted = Entry.Kind.ORG_UNIT if kind == "ou" else Entry.Kind.GROUP
    entry = (Entry.objects.filter(connection__client=client, kind=wanted, pk=pk)
             .only("pk", "name").first())
    return None if entry is None else TreeNode(kind, entry.pk, entry.name)


def _node_users(client: Client, node: TreeNode) -> QuerySet[Entry, tuple[object, ...]]:
    users = _users(client)
    if node.kind == "ou":
        return users.filter(parent_id=node.pk)
    if node.kind == "group":
        return users.filter(pk__in=GroupMember.objects.filter(group_id=node.pk).values("user_id"))
    return users.filter(connection_id=node.pk, parent__isnull=True)


def setup_node_users(
    *, client: Client, kind: NodeKind, pk: int, offset: int = 0, limit: int | None = None
) -> NodeUsers | None:
    """One page of the users directly in an OU, in a group, or in no OU (``kind`` "root",
    ``pk`` the connection). None when the node is not the client's."""
    node = _node(client, kind, pk)
    if node is None:
        return None
    users = _node_users(client, node)
    node.direct = node.total = users.count()
    limit = limit or NODE_PAGE
    return NodeUsers(node, _rows(users[offset:offset + limit]), offset)


def setup_all_users(*, client: Client, view: Literal["ou", "groups"],
                    limit: int | None = None) -> list[NodeUsers]:
    """The first page of every node's users at once, for Expand All: one query for the
    OU view, two for the groups view, however many nodes there are."""
    limit = limit or NODE_PAGE
    by_node: dict[tuple[NodeKind, int], list[SetupUser]] = defaultdict(list)
    counts: dict[tuple[NodeKind, int], int] = defaultdict(int)
    if view == "ou":
        for user in _rows(_users(client)):
            key: tuple[NodeKind, int] = (
                ("ou", user.parent_id) if user.parent_id else ("root", user.connection_id)
            )
            counts[key] += 1
            if counts[key] <= limit:
                by_node[key].append(user)
    else:
        users = {user.pk: user for user in _rows(_users(client))}
        pairs = GroupMember.objects.filter(group__connection__client=client).values_list(
            "group_id", "user_id"
        )
        for group_id, user_id in pairs:
            key = ("group", group_id)
            counts[key] += 1
            if counts[key] <= limit and user_id in users:
                by_node[key].append(users[user_id])
        order = {pk: n for n, pk in enumerate(users)}
        for rows in by_node.values():
            rows.sort(key=lambda user: order[user.pk])
    return [
        NodeUsers(TreeNode(kind, pk, "", direct=counts[(kind, pk)]), rows, 0)
        for (kind, pk), rows in by_node.items()
    ]


@dataclass
class SearchResult:
    users: list[SetupUser]
    more: bool


def setup_search(*, client: Client, query: str, limit: int = SEARCH_LIMIT) -> SearchResult:
    """The client's users whose name, username, UPN or email contains ``query``."""
    query = query.strip()
    if len(query) < SEARCH_MIN:
        return SearchResult([], False)
    matches = _users(client).filter(
        Q(name__icontains=query) | Q(username__icontains=query) | Q(upn__icontains=query)
        | Q(email__icontains=query)
    )
    rows = _rows(matches[:limit + 1])
    return SearchResult(rows[:limit], len(rows) > limit)


@dataclass
class SetupSelection:
    """What the ticks in the tree come to: the directory users to invite."""

    object_ids: set[str] = field(default_factory=set)
    # Users under a ticked OU or group that were left out, by reason.
    left_out: dict[str, int] = field(default_factory=dict)


def setup_selection_resolve(
    *, client: Client, ou_ids: Iterable[int] = (), group_ids: Iterable[int] = (),
    root_ids: Iterable[int] = (), object_ids: Iterable[str] = (),
) -> SetupSelection:
    """Turn ticked OUs (with everything below them), groups, "not in an OU" nodes and
    single users into directory user ids, all within ``client``.

    Users reached through a ticked OU or group are left out when they are protected,
    disabled or already Blink users: ticking "Sales" means "everyone in Sales who can
    have Blink". Users ticked one by one are passed on as they are, so the invitation
    says why any of them was refused. Ids of another client's entries match nothing.
    """
    ou_ids, group_ids, root_ids = set(ou_ids), set(group_ids), set(root_ids)
    explicit = set(object_ids)
    subtree: set[int] = set()
    if ou_ids:
        children: dict[int | None, list[int]] = defaultdict(list)
        for pk, parent_id in Entry.objects.filter(
            connection__client=client, kind=Entry.Kind.ORG_UNIT
        ).values_list("pk", "parent_id"):
            children[parent_id].append(pk)
        known = {pk for pks in children.values() for pk in pks}
        todo = [pk for pk in ou_ids if pk in known]
        while todo:
            pk = todo.pop()
            if pk not in subtree:
                subtree.add(pk)
                todo.extend(children.get(pk, ()))
    reach = Q(pk__in=[])
    if subtree:
        reach |= Q(parent_id__in=subtree)
    if group_ids:
        reach |= Q(pk__in=GroupMember.objects.filter(
            group_id__in=group_ids, group__connection__client=client).values("user_id"))
    if root_ids:
        reach |= Q(connection_id__in=root_ids, parent__isnull=True)
    selection = SetupSelection()
    if not (subtree or group_ids or root_ids or explicit):
        return selection
    blink = BlinkUser.objects.filter(connection_id=OuterRef("connection_id"),
                                     object_id=OuterRef("object_id"))
    rows = (
        Entry.objects.filter(connection__client=client, kind=Entry.Kind.USER)
        .filter(reach | Q(object_id__in=explicit))
        .annotate(is_blink=Exists(blink))
        .values_list("object_id", "enabled", "protected", "is_blink")
    )
    left_out: dict[str, int] = defaultdict(int)
    for object_id, enabled, protected, is_blink in rows:
        if object_id in explicit:
            selection.object_ids.add(object_id)
        elif protected:
            left_out["protected"] += 1
        elif not enabled:
            left_out["disabled"] += 1
        elif is_blink:
            left_out["already"] += 1
        else:
            selection.object_ids.add(object_id)
    selection.left_out = dict(left_out)
    return selection


def blink_user_list(
    *, company: Company, client: Client | None = None, query: str = "", status: str = "",
) -> QuerySet[BlinkUser]:
    """The company's Blink users (or one client's), narrowed by a search on name,
    username and email and by status, each with the status of their latest outbound
    SMS as ``last_sms_status`` and whether the last sync saw their password set never to
    expire (``password_never_expires``: Blink refuses to reset those)."""
    last_sms = Message.objects.filter(
        blink_user=OuterRef("pk"), direction=Message.Direction.OUTBOUND
    ).order_by("-created_at", "-id").values("status")[:1]
    never_expires = Entry.objects.filter(
        connection_id=OuterRef("connection_id"), kind=Entry.Kind.USER,
        object_id=OuterRef("object_id"), password_never_expires=True)
    users = (
        BlinkUser.objects.filter(client__company=company)
        .select_related("client")
        .annotate(last_sms_status=Subquery(last_sms),
                  password_never_expires=Exists(never_expires))
        .order_by("display_name", "username", "pk")
    )
    if client is not None:
        users = users.filter(client=client)
    query = query.strip()
    if query:
        users = users.filter(Q(display_name__icontains=query) | Q(username__icontains=query)
                             | Q(email__icontains=query))
    if status:
        users = users.filter(status=status)
    return users
