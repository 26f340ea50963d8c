"""Membership roles of a user, derived from the database per request and cached in Redis.

A user holds a membership at a level through a row of the members resource (e.g.
``listmember``), and is manager of every membership record they own (a list's owner
manages it). The cache is a :class:`~apicrud.cache.ReadThrough` (``apicrud:roles:<uid>``),
dropped on every change that could alter it, before and after the change commits, so a
removed member loses access on their very next request; with cascades it keeps epochs
(``apicrud:roles:epoch``), and a change anywhere in a chain starts a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import select

from apicrud.cache import ReadThrough
from apicrud.db.repository import live

if TYPE_CHECKING:
    from redis import Redis

    from apicrud.access.policy import Policy
    from apicrud.context import RequestContext
    from apicrud.db.engine import Database

log = logging.getLogger("apicrud.access")


def _valid_roles(value: Any) -> bool:
    """A cached copy has the shape :meth:`MembershipRoles.load_via` answers."""
    return isinstance(value, list) and len(value) == 3 and \
        all(isinstance(d, dict) for d in value)


class MembershipRoles:
    """``for_uid(uid)`` -> {membership id: level}; ``uncache(uid)`` after changes."""

    def __init__(self, policy: Policy, resources: dict[str, Any], db: Database,
                 redis_client: Redis, ttl: int = 300) -> None:
        self.policy = policy
        self.db = db
        self.ttl = ttl
        levels = policy.privacy_levels
        self.owner_level = levels[-2]  # the highest level below secret: manager
        # (membership model, owner attr, members model, attr, level attr)
        self.sources: list[tuple[Any, str | None, Any, str, str]] = []
        self.resource_names = [ms.resource for ms in policy.memberships.values()]
        for ms in policy.memberships.values():
            owner_res = resources.get(ms.resource)
            members_res = resources.get(ms.members) if ms.members else None
            self.sources.append((
                owner_res.model if owner_res else None,
                owner_res.owner if owner_res else None,
                members_res.model if members_res else None,
                ms.attr, ms.level_attr))
        self.watched = {ms.resource for ms in policy.memberships.values()} | \
            {ms.members for ms in policy.memberships.values() if ms.members}
        # cascades: (child model, column naming the parent, parent resource, child
        # resource), parents before children, so one pass goes as deep as the chain
        self.cascades: list[tuple[Any, str, str, str]] = []
        order = sorted((ms for ms in policy.memberships.values() if ms.parent),
                       key=lambda ms: len(policy.cascade_chain(ms.resource)))
        for ms in order:
            parent = cast(str, ms.parent)  # order holds the memberships with one
            child = resources.get(ms.resource)
            parent_attr = policy.memberships[parent].attr
            if child is None or child.model is None or \
                    not hasattr(child.model, parent_attr):
                raise ValueError(f"private_resources: {ms.resource} has no column "
                                 f"{parent_attr} naming its parent {ms.parent}")
            self.cascades.append((child.model, parent_attr, parent, ms.resource))
        self.cache = ReadThrough(redis_client, "roles", ttl, epochs=bool(self.cascades))

    def for_uid(self, uid: str) -> tuple[dict[str, str], dict[str, str]]:
        """({membership id: level}, {membership id: membership resource}), cached."""
        return self.for_uid_via(uid)[:2]

    def cache_keys(self, uid: str) -> list[str]:
        """The Redis keys :meth:`for_uid_via` reads for ``uid`` (none without
        memberships): a caller reading Redis anyway (the session lookup) reads them in the
        same command and passes the replies as ``raw``."""
        return self.cache.keys_for(uid) if self.sources else []

    def for_uid_via(self, uid: str, raw: list[Any] | None = None
                    ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """As :meth:`for_uid`, with {membership id: the parent id it inherits from}.

        With cascades, a cached answer is only good for the epoch it was read in: every
        change of a membership, or of a private resource's parent, starts a new epoch
        (one counter in Redis, shared by every instance), so nobody keeps access a
        removal or a move took away, whatever level of the chain it happened at.

        :param raw: the replies to ``cache_keys(uid)`` read in this request (see there)
        """
        if not self.sources:
            return {}, {}, {}
        levels, kinds, via = self.cache.get(
            uid, lambda: list(self.load_via(uid)), valid=_valid_roles, raw=raw)
        return levels, kinds, via

    def load(self, uid: str) -> tuple[dict[str, str], dict[str, str]]:
        """Read a user's memberships from the database (no cache)."""
        return self.load_via(uid)[:2]

    def load_via(self, uid: str) -> tuple[dict[str, str], dict[str, str],
                                          dict[str, str]]:
        """Read a user's memberships from the database (no cache), with the cascade:
        a level held on a parent is held on each of its active children (one query per
        step of the chain)."""
        rank = self.policy.privacy_rank
        roles: dict[str, str] = {}
        kinds: dict[str, str] = {}
        with self.db.session() as session:
            for resource, (owner_model, owner_attr, members_model, attr, level_attr) in \
                    zip(self.resource_names, self.sources, strict=True):
                if members_model is not None:
                    stmt = select(getattr(members_model, attr),
                                  getattr(members_model, level_attr)) \
                        .where(members_model.uid == uid, live(members_model))
                    if owner_model is not None:  # memberships of trashed lists count not
                        stmt = stmt.join(owner_model, owner_model.id ==
                                         getattr(members_model, attr)) \
                            .where(live(owner_model))
                    rows = session.execute(stmt)
                    for mid, level in rows:
                        if level in self.policy.privacy_levels[1:-1]:
                            roles[mid] = level
                            kinds[mid] = resource
                if owner_model is not None and owner_attr:
                    owned = session.execute(
                        select(owner_model.id).where(getattr(owner_model, owner_attr) == uid,
                                                     live(owner_model))).scalars()
                    for mid in owned:
                        if mid not in roles or rank(roles[mid]) < rank(self.owner_level):
                            roles[mid] = self.owner_level
                            kinds[mid] = resource
            via: dict[str, str] = {}
            for model, parent_attr, parent, child in self.cascades:
                held = [m for m, kind in kinds.items() if kind == parent]
                if not held:
                    continue
                column = getattr(model, parent_attr)
                rows = session.execute(select(model.id, column).where(
                    column.in_(sorted(held)), live(model)))
                for mid, pid in rows:
                    level = roles[pid]
                    if mid not in roles or rank(roles[mid]) < rank(level):
                        roles[mid] = level
                        kinds[mid] = child
                        via[mid] = pid
        return roles, kinds, via

    def uncache(self, *uids: str | None) -> None:
        self.cache.drop(*uids)

    def changed(self, ctx: RequestContext, resource: str, records: list[Any],
                extra_uids: Iterable[str | None] = ()) -> None:
        """A write touched these records: drop the roles of every user it may affect, now
        and again once the transaction commits (a concurrent read cannot re-cache stale
        roles past the commit)."""
        if resource not in self.watched:
            return
        if self.cascades:
            # a change anywhere in a chain may change what its children grant: a new
            # epoch for everyone, now and once the transaction commits
            self.cache.new_epoch_around_commit(ctx)
        uids = {getattr(r, "uid", None) for r in records} | set(extra_uids)
        ms = self.policy.memberships.get(resource)
        if ms is not None and ms.members:
            # a membership record changed (e.g. a list trashed): all its members
            for owner_model, _, members_model, attr, _ in self.sources:
                if members_model is None or owner_model is None or \
                        owner_model.__tablename__ != records[0].__tablename__:
                    continue
                uids |= set(ctx.db.execute(select(members_model.uid).where(
                    getattr(members_model, attr).in_([r.id for r in records]))).scalars())
        self.cache.drop_around_commit(ctx, *sorted(u for u in uids if u))
