"""Who is calling: the result of authentication, handed to every controller."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from apicrud.memo import Memo


class AccessKey(tuple):
    """A :attr:`Principal.access_key`: a tuple that works out its hash once (a memo
    lookup hashes its key, and this one holds every membership of the caller)."""

    def __new__(cls, parts: tuple) -> AccessKey:
        key = super().__new__(cls, parts)
        key.__dict__["hash"] = tuple.__hash__(key)
        return key

    def __hash__(self) -> int:
        return self.__dict__["hash"]


#: access key -> the one object standing for it (see Principal.access_key)
_ACCESS_KEYS: Memo[AccessKey, AccessKey] = Memo(4096)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, or the anonymous one (``uid is None``).

    :param memberships: membership resource id -> level name held there (a later
        issue fills it; the evaluator already reads it).
    """

    uid: str | None = None
    account_id: str | None = None
    username: str | None = None
    is_admin: bool = False
    status: str = "active"  # active or pending
    method: str = "anonymous"  # bearer, cookie, basic, apikey, jwt
    scopes: frozenset[str] | None = None  # None: not restricted (sessions)
    apikey_id: str | None = None  # the API key authenticating the request (method apikey)
    memberships: dict[str, str] = field(default_factory=dict)
    membership_kinds: dict[str, str] = field(default_factory=dict)  # id -> resource (list)
    # cascades: membership id -> the parent's id its level comes from (explain names it)
    membership_via: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    csrf: str | None = None

    @cached_property
    def access_key(self) -> tuple:
        """Everything about the caller an access decision can depend on: the key under
        which the evaluator caches WHERE clauses and ``rbac`` letters.

        Equal keys are one object (interned here): a memo finding its entry compares the
        key it holds with the one asked by identity first, where two equal tuples built
        by two requests would be compared membership by membership, on each lookup."""
        key = AccessKey((self.uid, self.is_admin, self.status,
                         tuple(sorted(self.memberships.items()))))
        return _ACCESS_KEYS.get_or_put(key, lambda: key)

    def with_memberships(self, memberships: dict[str, str], kinds: dict[str, str],
                         via: dict[str, str]) -> Principal:
        """This caller holding these memberships: the copy ``dataclasses.replace`` makes,
        at a fifth of its cost (each request's roles are loaded so), without the
        :attr:`access_key` this one may have cached."""
        new = object.__new__(type(self))
        fields = new.__dict__
        fields.update(self.__dict__)
        fields.pop("access_key", None)
        fields["memberships"] = memberships
        fields["membership_kinds"] = kinds
        fields["membership_via"] = via
        return new

    @property
    def authenticated(self) -> bool:
        return self.uid is not None

    @property
    def roles(self) -> list[str]:
        """Role names as shown by ``GET /auth`` and used by policies."""
        if not self.authenticated:
            return []
        out = ["pending"] if self.status == "pending" else ["user"]
        if self.is_admin:
            out.append("admin")
        out += [f"{self.membership_kinds.get(k, 'membership')}-{k}-{v}"
                for k, v in sorted(self.memberships.items())]
        return out


ANONYMOUS = Principal()
