"""Token authentication through Django's cache (Redis), with the caller's memberships."""

from django.core.cache import cache
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from drfpeer.models import List, ListMember

LEVEL_RANK = {"invitee": 1, "member": 2, "manager": 3}
TOKEN_TTL, ROLES_TTL = 86400, 300


class Caller:
    """The authenticated user: a person id and the lists they hold a role in."""

    is_authenticated = True

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self._levels = None

    @property
    def levels(self) -> dict:
        if self._levels is None:
            key = f"roles:{self.uid}"
            levels = cache.get(key)
            if levels is None:
                levels = {}
                rows = list(ListMember.objects.filter(uid=self.uid, status="active")
                            .values_list("list_id", "authorization")) + \
                    [(i, "manager") for i in List.objects.filter(
                        uid=self.uid, status="active").values_list("id", flat=True)]
                for list_id, level in rows:
                    if LEVEL_RANK.get(level, 0) > LEVEL_RANK.get(levels.get(list_id), 0):
                        levels[list_id] = level
                cache.set(key, levels, ROLES_TTL)
            self._levels = levels
        return self._levels


class CachedTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>``, the token's user kept in the cache at login."""

    def authenticate(self, request):
        scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        uid = cache.get(f"token:{token.strip()}")
        if uid is None:
            raise exceptions.AuthenticationFailed("invalid or expired credentials")
        return Caller(uid), token

    def authenticate_header(self, request):
        return "Bearer"
