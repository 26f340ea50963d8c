"""The visibility rule, serializer, pagination and views."""

import secrets
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error
from django.core import signing
from django.core.cache import cache
from django.db.models import OuterRef, Q, Subquery
from rest_framework import exceptions, pagination, serializers, viewsets
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.response import Response

from drfpeer.auth import TOKEN_TTL, Caller
from drfpeer.models import Account, Message, Person

PRIVACY = ("public", "invitee", "member", "manager", "secret")
hasher = PasswordHasher()


def visible(caller: Caller) -> Q:
    """CONTRACT 5: the author, public, or a role in the list at or above the privacy."""
    q = Q(uid=caller.uid) | Q(privacy="public")
    by_level: dict = {}
    for list_id, level in caller.levels.items():
        by_level.setdefault(level, []).append(list_id)
    for level, ids in sorted(by_level.items()):
        q |= Q(list_id__in=sorted(ids), privacy__in=PRIVACY[:PRIVACY.index(level) + 1])
    return q


def letters(caller: Caller, m) -> str:
    """The rbac letters apicrud gives a message (rbac.yaml's rules for messages)."""
    held = set()
    if m.uid == caller.uid:
        held |= {"r", "u", "d"}
    level = caller.levels.get(m.list_id)
    if level == "manager":
        held |= {"c", "u", "d"}
    if level in ("manager", "member"):
        held.add("c")
    if m.privacy == "public" or (level is not None and m.privacy != "secret"
                                 and PRIVACY.index(m.privacy) <= PRIVACY.index(level)):
        held.add("r")
    if "r" in held:
        held.add("l")
    return "".join(sorted(held))


class MessageSerializer(serializers.ModelSerializer):
    author = serializers.CharField(read_only=True, allow_null=True)
    rbac = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = ("id", "list_id", "subject", "content", "privacy", "uid", "status",
                  "created", "modified", "author", "rbac")

    def get_rbac(self, m) -> str:
        return letters(self.context["request"].user, m)


class KeysetPagination(pagination.BasePagination):
    """apicrud's page: ``items``, ``count`` (unless count=none), a signed ``cursor_next``."""

    def paginate_queryset(self, queryset, request, view=None):
        params = request.query_params
        limit, after = params.get("limit"), None
        if "cursor_next" in params:
            try:
                state = signing.loads(params["cursor_next"], salt="drf-cursor")
            except signing.BadSignature:
                raise exceptions.ValidationError({"cursor_next": "invalid cursor"}) from None
            after, limit = state["i"], limit or state["l"]
        try:
            self.limit = int(limit or 25)
        except ValueError:
            raise exceptions.ValidationError({"limit": "must be a number"}) from None
        if not 1 <= self.limit <= 1000:
            raise exceptions.ValidationError({"limit": "must be 1 to 1000"})
        self.count = None if params.get("count") == "none" else queryset.count()
        if after is not None:
            queryset = queryset.filter(id__gt=after)
        rows = list(queryset.order_by("id")[:self.limit + 1])
        self.more = len(rows) > self.limit
        self.page = rows[:self.limit]
        return self.page

    def get_paginated_response(self, data):
        body = {"items": data}
        headers = {}
        if self.count is not None:
            body["count"] = self.count
            headers["X-Total-Count"] = str(self.count)
        if self.more:
            body["cursor_next"] = signing.dumps({"i": self.page[-1].id, "l": self.limit},
                                                salt="drf-cursor")
        return Response(body, headers=headers)


class MessageViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = MessageSerializer
    pagination_class = KeysetPagination
    filterset_fields = ("list_id", "privacy", "uid")

    def get_queryset(self):
        caller = self.request.user
        author = Person.objects.filter(id=OuterRef("uid"), status="active") \
            .filter(Q(id=caller.uid) | Q(privacy="public")).values("name")[:1]
        live = Message.objects.filter(status="active") if self.action == "retrieve" \
            else Message.objects.exclude(status="disabled")  # apicrud's "not trashed"
        return live.filter(visible(caller)).annotate(author=Subquery(author)) \
            .only(*MessageSerializer.Meta.fields[:-2], "version")

    def retrieve(self, request, *args, **kwargs):
        m = self.get_object()
        response = Response(self.get_serializer(m).data)
        response["ETag"] = f'"{m.id}:{m.version}"'
        return response


@api_view(["POST"])
@authentication_classes([])
@permission_classes([])
def login(request):
    body = request.data
    if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
            or not isinstance(body.get("password"), str):
        raise exceptions.ValidationError("username and password are required")
    account = Account.objects.filter(name=body["username"], status="active").first()
    try:
        ok = account is not None and hasher.verify(account.password, body["password"])
    except Argon2Error:
        ok = False
    if not ok:
        raise exceptions.AuthenticationFailed("invalid username or password")
    Account.objects.filter(id=account.id).update(
        last_login=datetime.now(UTC).replace(tzinfo=None))
    token = secrets.token_urlsafe(32)
    cache.set(f"token:{token}", account.uid, TOKEN_TTL)
    return Response({"uid": account.uid, "account_id": account.id, "username": account.name,
                     "token": token, "roles": ["user"]}, status=201)
